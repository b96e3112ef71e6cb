using System.Text.Json;
using EdgeLlm.Backends;
using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Model;

// Compiled into both the xunit project and the AOT KernelCheck harness (tests/EdgeLlm.KernelCheck), so arm64 under
// qemu runs the same acceptance check.

/// <summary>
/// The acceptance check of a weight type: tests/data/models-visible/llama-TYPE.gguf (llama.gguf requantized by
/// llama-quantize --pure) runs through the engine on the CPU over the 40 tokens of tokens.txt, and its logits are
/// compared with the F16 model's logits from llama.cpp (llama.json) the way llama.cpp's own logits of the same file
/// (llama-TYPE.json) compare with them: the RMS of the differences over the ids in both top-10 lists of each position,
/// and how many positions' top-1 agree with llama.json's.
/// </summary>
internal static class QuantTypeLogits
{
    /// <summary>The ten requantized files of models-visible.</summary>
    public static readonly string[] Types = ["Q4_1", "Q5_0", "Q5_1", "Q5_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS", "Q4_K", "Q6_K"];

    public sealed record Result(string Type, double OurRms, double RefRms, int OurTop1, int RefTop1, int Positions, int Compared)
    {
        /// <summary>Within 10% of llama.cpp's RMS (either way) and top-1 agreement within 3 of llama.cpp's.</summary>
        public bool Passes => Math.Abs(OurRms - RefRms) <= 0.10 * RefRms && Math.Abs(OurTop1 - RefTop1) <= 3;

        public override string ToString() =>
            $"{Type}: RMS ours {OurRms:F5} vs llama.cpp {RefRms:F5} ({Percent(OurRms / RefRms - 1)}), " +
            $"top-1 ours {OurTop1}/{Positions} vs llama.cpp {RefTop1}/{Positions} ({Compared} logits compared)";
    }

    private static string Percent(double f) => (f >= 0 ? "+" : "") + (f * 100).ToString("F1", System.Globalization.CultureInfo.InvariantCulture) + "%";

    /// <summary>Top-10 lists per position of a llama.cpp reference file, and its token ids.</summary>
    public static (int[] Tokens, (int Id, double Logit)[][] Top) ReadReference(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        int[] tokens = doc.RootElement.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var top = doc.RootElement.GetProperty("top10").EnumerateArray()
            .Select(p => p.EnumerateArray().Select(e => (e[0].GetInt32(), e[1].GetDouble())).ToArray()).ToArray();
        return (tokens, top);
    }

    /// <summary>Runs llama-<paramref name="type"/>.gguf in <paramref name="dir"/> on the CPU and scores it.</summary>
    public static Result Check(string dir, string type, int threads = 2)
    {
        var (tokens, f16) = ReadReference(Path.Combine(dir, "llama.json"));
        var (refTokens, quant) = ReadReference(Path.Combine(dir, $"llama-{type}.json"));
        if (!tokens.SequenceEqual(refTokens)) throw new InvalidDataException($"llama-{type}.json: token ids differ from llama.json");
        if (f16.Length != tokens.Length || quant.Length != tokens.Length) throw new InvalidDataException($"llama-{type}.json: one top-10 list per token expected");

        using var model = LlamaModel.Load(Path.Combine(dir, $"llama-{type}.gguf"),
            new BackendOptions { Threads = threads, ContextSize = tokens.Length, MaxBatch = tokens.Length, Device = "cpu" });
        int v = model.VocabSize;
        var logits = new float[tokens.Length * v];
        model.Forward(tokens, 0, logits, allLogits: true);

        double ourSq = 0, refSq = 0;
        int compared = 0, ourTop1 = 0, refTop1 = 0;
        for (int p = 0; p < tokens.Length; p++)
        {
            var ours = logits.AsSpan(p * v, v);
            foreach (var (id, f) in f16[p])
            {
                int k = Array.FindIndex(quant[p], e => e.Id == id);
                if (k < 0) continue;
                ourSq += Math.Pow(ours[id] - f, 2);
                refSq += Math.Pow(quant[p][k].Logit - f, 2);
                compared++;
            }
            if (ArgMax(ours) == f16[p][0].Id) ourTop1++;
            if (quant[p][0].Id == f16[p][0].Id) refTop1++;
        }
        return new Result(type, Math.Sqrt(ourSq / compared), Math.Sqrt(refSq / compared), ourTop1, refTop1, tokens.Length, compared);
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
