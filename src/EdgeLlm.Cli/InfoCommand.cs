using System.Globalization;
using EdgeLlm.Gguf;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm info`: the architecture, every metadata pair and the tensor table of a GGUF file. With --verify it
/// then recomputes each tensor's XXH64 against the checksums edgellm-convert stored and reports OK or MISMATCH
/// per tensor; the exit code is 1 when any tensor differs (or the file carries no checksums).
/// </summary>
public sealed class InfoCommand : Command
{
    public override string Name => "info";
    public override string Summary => "print a GGUF file's architecture, metadata and tensor table";
    public override string Usage => "info [MODEL | -m MODEL] [--verify]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, VerifyOption, Verbose, Help];

    private static readonly OptionSpec VerifyOption = new(["--verify"], false, null,
        $"recompute every tensor's XXH64 and compare it with the stored '{TensorChecksums.MetadataKey}' (exit 1 on a mismatch)");

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.ModelPositional();
        string path = ModelPaths.Resolve(args.GetString("-m"));
        using var f = ModelPaths.Open(path);
        var o = ctx.Out;
        var inv = CultureInfo.InvariantCulture;
        o.WriteLine($"file:          {path}");
        o.WriteLine($"size:          {f.FileSize.ToString("N0", inv)} bytes");
        o.WriteLine($"gguf version:  {f.Version}");
        o.WriteLine($"alignment:     {f.Alignment}");
        o.WriteLine($"architecture:  {Printable(f.GetString("general.architecture") ?? "(none)")}");
        if (f.GetString("general.name") is { } name) o.WriteLine($"name:          {Printable(name)}");
        o.WriteLine();
        o.WriteLine($"metadata ({f.Keys.Count} keys):");
        foreach (string key in f.Keys) o.WriteLine($"  {Printable(key)} = {Printable(f.Get(key)?.ToString() ?? "")}");
        o.WriteLine();
        long total = 0, elements = 0;
        var byType = new SortedDictionary<string, long>(StringComparer.Ordinal);
        o.WriteLine($"tensors ({f.Tensors.Count}):");
        o.WriteLine($"  {"name",-32} {"type",-6} {"shape",-22} {"bytes",14}");
        foreach (var t in f.Tensors)
        {
            o.WriteLine($"  {Printable(t.Name),-32} {GgmlTypes.Name(t.Type),-6} {t.ShapeString,-22} {t.ByteSize.ToString("N0", inv),14}");
            total += t.ByteSize;
            elements += t.ElementCount;
            string tn = GgmlTypes.Name(t.Type);
            byType[tn] = byType.GetValueOrDefault(tn) + 1;
        }
        o.WriteLine();
        double bpw = elements == 0 ? 0 : total * 8.0 / elements;
        o.WriteLine($"parameters:    {elements.ToString("N0", inv)}");
        o.WriteLine($"tensor bytes:  {total.ToString("N0", inv)} ({bpw.ToString("F2", inv)} bits per weight)");
        o.WriteLine($"tensor types:  {string.Join(", ", byType.Select(kv => $"{kv.Key} x{kv.Value}"))}");
        int rc = args.Has("--verify") ? Verify(f, o) : 0;
        o.WriteLine();
        string? why = WhyNotRunnable(f);
        if (why is null)
        {
            o.WriteLine("runnable:      yes");
            return rc;
        }
        o.WriteLine($"runnable:      no: {Printable(why)}");
        o.Flush();
        ctx.Err.WriteLine($"edgellm info: {path} is a valid GGUF file but not a model edgellm can run: {Printable(why)}");
        return 1;
    }

    /// <summary>Why `run` would refuse the file (config, tensors, tokenizer), or null when it would load.</summary>
    private static string? WhyNotRunnable(GgufFile f)
    {
        try
        {
            var config = EdgeLlm.Model.LlamaConfig.FromGguf(f);
            _ = new EdgeLlm.Model.LlamaWeights(f, config);
            var tok = EdgeLlm.Generation.Tokenizer.FromGguf(f);
            if (tok.Vocab.Count != config.VocabSize)
                return $"the tokenizer has {tok.Vocab.Count} tokens but the model's vocabulary is {config.VocabSize}";
            return null;
        }
        catch (Exception e) when (e is EdgeLlmException or GgufFormatException or ArgumentException or NotSupportedException)
        {
            return e.Message;
        }
    }

    /// <summary>
    /// Model-provided text made safe for a terminal: control characters (C0, DEL, C1, which include the escape that
    /// starts terminal sequences) and lone surrogates are shown as \xNN / \uNNNN.
    /// </summary>
    internal static string Printable(string s)
    {
        int i = 0;
        while (i < s.Length && !NeedsEscape(s, i)) i++;
        if (i == s.Length) return s;
        var sb = new System.Text.StringBuilder(s.Length + 16);
        sb.Append(s, 0, i);
        for (; i < s.Length; i++)
        {
            char c = s[i];
            if (!NeedsEscape(s, i)) { sb.Append(c); continue; }
            sb.Append(c < 0x100 ? $"\\x{(int)c:x2}" : $"\\u{(int)c:x4}");
        }
        return sb.ToString();
    }

    private static bool NeedsEscape(string s, int i)
    {
        char c = s[i];
        if (c < 0x20 || (c >= 0x7f && c < 0xa0)) return true;
        if (char.IsHighSurrogate(c)) return !(i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]));
        if (char.IsLowSurrogate(c)) return !(i > 0 && char.IsHighSurrogate(s[i - 1]));
        return false;
    }

    private static int Verify(GgufFile f, TextWriter o)
    {
        var entries = TensorChecksums.Verify(f);
        o.WriteLine();
        o.WriteLine($"verify ({TensorChecksums.MetadataKey}):");
        int bad = 0;
        foreach (var e in entries)
        {
            if (e.Ok) o.WriteLine($"  OK        {e.Name}");
            else
            {
                bad++;
                o.WriteLine($"  MISMATCH  {e.Name} (stored {e.Expected:x16}, computed {e.Actual:x16})");
            }
        }
        o.WriteLine(bad == 0 ? $"verify: all {entries.Length} tensors OK" : $"verify: {bad} of {entries.Length} tensors MISMATCH");
        return bad == 0 ? 0 : 1;
    }
}
