using System.Globalization;
using System.Text.Json;

namespace EdgeLlm.Cli;

/// <summary>
/// Logits that <c>edgellm logits</c> wrote earlier (one JSON object per position, the top-K (id, logit) pairs),
/// read back to compare another run with them: another device, another engine's numbers converted to the same lines,
/// or another quantization of the same model. The file is untrusted input: every count and id is checked.
/// </summary>
public sealed class LogitsReference
{
    /// <summary>Most positions and pairs per position read from one file.</summary>
    public const int MaxPositions = 1 << 20, MaxPairs = 1 << 20;

    public required int[] Tokens { get; init; }
    public required int[][] Ids { get; init; }
    public required float[][] Logits { get; init; }

    public static LogitsReference Read(string path)
    {
        var tokens = new List<int>();
        var ids = new List<int[]>();
        var values = new List<float[]>();
        int lineNo = 0;
        foreach (string line in ReadLines(path))
        {
            lineNo++;
            if (line.Length == 0) continue;
            if (tokens.Count == MaxPositions) throw Bad(path, lineNo, $"more than {MaxPositions} positions");
            try
            {
                ParseLine(line, tokens.Count, out int token, out int[] rowIds, out float[] rowValues);
                tokens.Add(token);
                ids.Add(rowIds);
                values.Add(rowValues);
            }
            catch (JsonException e) { throw Bad(path, lineNo, "not a JSON object of `edgellm logits`: " + e.Message); }
            catch (FormatException e) { throw Bad(path, lineNo, e.Message); }
        }
        if (tokens.Count == 0) throw new EdgeLlmException($"{path}: no logits lines");
        return new LogitsReference { Tokens = [.. tokens], Ids = [.. ids], Logits = [.. values] };
    }

    private static IEnumerable<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new EdgeLlmException($"{path}: no such file");
        try { return File.ReadLines(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EdgeLlmException(IO.ErrorText.OneLine(e));
        }
    }

    private static EdgeLlmException Bad(string path, int line, string what) => new($"{path}:{line}: {what}");

    private static void ParseLine(string line, int expectedPos, out int token, out int[] ids, out float[] logits)
    {
        var r = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(line), new JsonReaderOptions { MaxDepth = 4 });
        int pos = -1;
        token = -1;
        var idList = new List<int>();
        var valueList = new List<float>();
        Expect(ref r, JsonTokenType.StartObject);
        while (Next(ref r) != JsonTokenType.EndObject)
        {
            if (r.TokenType != JsonTokenType.PropertyName) throw new FormatException("a property name was expected");
            string name = r.GetString()!;
            switch (name)
            {
                case "pos": Expect(ref r, JsonTokenType.Number); pos = r.GetInt32(); break;
                case "token": Expect(ref r, JsonTokenType.Number); token = r.GetInt32(); break;
                case "top":
                    Expect(ref r, JsonTokenType.StartArray);
                    while (Next(ref r) != JsonTokenType.EndArray)
                    {
                        if (r.TokenType != JsonTokenType.StartArray) throw new FormatException("top: [id, logit] pairs were expected");
                        if (idList.Count == MaxPairs) throw new FormatException($"top: more than {MaxPairs} pairs");
                        Expect(ref r, JsonTokenType.Number);
                        int id = r.GetInt32();
                        Expect(ref r, JsonTokenType.Number);
                        float v = r.GetSingle();
                        Expect(ref r, JsonTokenType.EndArray);
                        if (id < 0) throw new FormatException($"top: token id {id} is negative");
                        if (!float.IsFinite(v)) throw new FormatException($"top: the logit of id {id} is not finite");
                        idList.Add(id);
                        valueList.Add(v);
                    }
                    break;
                default: r.Skip(); break;
            }
        }
        if (pos != expectedPos) throw new FormatException($"\"pos\" is {pos}, expected {expectedPos} (positions in order from 0)");
        if (token < 0) throw new FormatException("\"token\" is missing or negative");
        if (idList.Count == 0) throw new FormatException("\"top\" is missing or empty");
        ids = [.. idList];
        logits = [.. valueList];
    }

    private static JsonTokenType Next(ref Utf8JsonReader r)
    {
        if (!r.Read()) throw new FormatException("the line ends early");
        return r.TokenType;
    }

    private static void Expect(ref Utf8JsonReader r, JsonTokenType type)
    {
        if (Next(ref r) != type) throw new FormatException($"{type} was expected, found {r.TokenType}");
    }

    /// <summary>How a run's logits (row-major [positions, vocab]) agree with this file, over the ids the file lists.</summary>
    public Comparison CompareWith(ReadOnlySpan<float> logits, int vocab, string path)
    {
        int n = Tokens.Length;
        if ((long)n * vocab > logits.Length) throw new ArgumentException("fewer logits rows than reference positions", nameof(logits));
        int agree = 0, worstPos = 0, maxPos = 0, maxId = 0;
        double worst = 0, maxAbs = 0;
        for (int p = 0; p < n; p++)
        {
            var row = logits.Slice(p * vocab, vocab);
            int[] ids = Ids[p];
            float[] refs = Logits[p];
            double num = 0, den = 0;
            for (int i = 0; i < ids.Length; i++)
            {
                if (ids[i] >= vocab) throw new EdgeLlmException($"{path}: position {p} lists token id {ids[i]}, outside the vocabulary of {vocab}");
                double d = row[ids[i]] - (double)refs[i];
                num += d * d;
                den += (double)refs[i] * refs[i];
                if (Math.Abs(d) > maxAbs) { maxAbs = Math.Abs(d); maxPos = p; maxId = ids[i]; }
            }
            double nmse = den > 0 ? num / den : num;
            if (nmse > worst) { worst = nmse; worstPos = p; }
            int best = 0;
            for (int id = 1; id < vocab; id++) if (row[id] > row[best]) best = id;
            if (best == ids[0]) agree++;
        }
        return new Comparison(n, agree, worst, worstPos, maxAbs, maxPos, maxId);
    }

    /// <summary>Top-1 agreement (this run's argmax is the file's first id), the worst position's NMSE over the file's ids, the largest difference.</summary>
    public readonly record struct Comparison(int Positions, int Top1Agree, double WorstNmse, int WorstPos, double MaxAbsDiff, int MaxAbsPos, int MaxAbsId)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"compare: positions={Positions} top1_agree={Top1Agree} worst_nmse={WorstNmse:E3} worst_pos={WorstPos} max_abs_diff={MaxAbsDiff:F5} max_abs_pos={MaxAbsPos} max_abs_id={MaxAbsId}");
    }
}
