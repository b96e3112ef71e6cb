using System.Text;

namespace EdgeLlm.Tests.Generation;

/// <summary>
/// llama.cpp's tokenizer test vectors (tests/test-tokenizer-0.cpp format): the .inp file holds inputs separated
/// by lines "__ggml_vocab_test__", the .out file one line of expected ids per input (no BOS, add_special off).
/// </summary>
internal static class VocabTestVectors
{
    private static readonly Dictionary<string, (string Input, int[] Ids)[]> Cache = new();

    public static (string Input, int[] Ids)[] Load(string vocabFile) =>
        Load(TestPaths.Data(vocabFile + ".inp"), TestPaths.Data(vocabFile + ".out"));

    /// <summary>The texts of an .inp file.</summary>
    public static List<string> Inputs(string inpPath)
    {
        string raw = Encoding.UTF8.GetString(File.ReadAllBytes(inpPath));
        const string sep = "\n__ggml_vocab_test__\n";
        var inputs = new List<string>();
        int pos = 0;
        while (pos < raw.Length)
        {
            int next = raw.IndexOf(sep, pos, StringComparison.Ordinal);
            if (next < 0) { inputs.Add(raw[pos..]); break; }
            inputs.Add(raw[pos..next]);
            pos = next + sep.Length;
        }
        return inputs;
    }

    /// <summary>Inputs and expected ids from an .inp file and its .out file (which may live elsewhere, e.g. an oracle's output).</summary>
    public static (string Input, int[] Ids)[] Load(string inpPath, string outPath)
    {
        string key = inpPath + "|" + outPath;
        lock (Cache)
        {
            if (Cache.TryGetValue(key, out var cached)) return cached;
            var inputs = Inputs(inpPath);
            string[] lines = File.ReadAllLines(outPath, Encoding.UTF8);
            if (lines.Length != inputs.Count)
                throw new InvalidDataException($"{outPath}: {inputs.Count} inputs but {lines.Length} output lines");
            var result = new (string, int[])[inputs.Count];
            for (int i = 0; i < inputs.Count; i++)
            {
                string line = lines[i].Trim();
                int[] ids = line.Length == 0 ? [] : Array.ConvertAll(line.Split(' ', StringSplitOptions.RemoveEmptyEntries), int.Parse);
                result[i] = (inputs[i], ids);
            }
            Cache[key] = result;
            return result;
        }
    }

    public static TheoryData<int> Indices(string vocabFile)
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < Load(vocabFile).Length; i++) data.Add(i);
        return data;
    }
}
