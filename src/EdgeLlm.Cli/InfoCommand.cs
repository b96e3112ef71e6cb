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
    public override string Usage => "info [-m MODEL] [--verify]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, VerifyOption, Verbose, Help];

    private static readonly OptionSpec VerifyOption = new(["--verify"], false, null,
        $"recompute every tensor's XXH64 and compare it with the stored '{TensorChecksums.MetadataKey}' (exit 1 on a mismatch)");

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        string path = ModelPaths.Resolve(args.GetString("-m"));
        using var f = GgufFile.Open(path);
        var o = ctx.Out;
        var inv = CultureInfo.InvariantCulture;
        o.WriteLine($"file:          {path}");
        o.WriteLine($"size:          {f.FileSize.ToString("N0", inv)} bytes");
        o.WriteLine($"gguf version:  {f.Version}");
        o.WriteLine($"alignment:     {f.Alignment}");
        o.WriteLine($"architecture:  {f.GetString("general.architecture") ?? "(none)"}");
        if (f.GetString("general.name") is { } name) o.WriteLine($"name:          {name}");
        o.WriteLine();
        o.WriteLine($"metadata ({f.Keys.Count} keys):");
        foreach (string key in f.Keys) o.WriteLine($"  {key} = {f.Get(key)}");
        o.WriteLine();
        long total = 0, elements = 0;
        var byType = new SortedDictionary<string, long>(StringComparer.Ordinal);
        o.WriteLine($"tensors ({f.Tensors.Count}):");
        o.WriteLine($"  {"name",-32} {"type",-6} {"shape",-22} {"bytes",14}");
        foreach (var t in f.Tensors)
        {
            o.WriteLine($"  {t.Name,-32} {GgmlTypes.Name(t.Type),-6} {t.ShapeString,-22} {t.ByteSize.ToString("N0", inv),14}");
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
        return args.Has("--verify") ? Verify(f, o) : 0;
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
