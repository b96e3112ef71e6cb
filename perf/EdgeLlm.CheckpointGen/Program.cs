using System.Diagnostics;
using System.Globalization;
using EdgeLlm.Convert.Sources;
using EdgeLlm.TestSupport;

// checkpoint-gen meta|hf OUTDIR [--dim N] [--layers N] [--heads N] [--kv-heads N] [--vocab N] [--multiple-of N]
//                [--ffn-multiplier X] [--shards N] [--max-shard-mb N] [--seed N] [--zip64]
// checkpoint-gen read-meta DIR [--rows N]: reads every tensor of a Meta checkpoint through MetaPthSource.ReadRows
//                (N rows at a time, one thread) and reports the input MB/s of the source alone.
// Defaults: Llama-2-70B's shape cut to 2 layers, 8 Meta shards, 5 GB safetensors files.
if (args.Length >= 2 && args[0] == "read-meta")
{
    int rows = args.Length >= 4 && args[2] == "--rows" ? int.Parse(args[3], CultureInfo.InvariantCulture) : 64;
    var watch = Stopwatch.StartNew();
    using var src = MetaPthSource.Open(args[1]);
    long inBytes = 0;
    double checksum = 0;
    float[] buf = [];
    foreach (var t in src.Tensors)
    {
        int n = (int)Math.Max(1, Math.Min(rows, t.Rows));
        if (buf.Length < n * t.RowLength) buf = new float[n * t.RowLength];
        for (long r = 0; r < t.Rows; r += n)
        {
            int c = (int)Math.Min(n, t.Rows - r);
            t.ReadRows(r, c, buf);
            checksum += buf[0];
        }
        inBytes += t.Rows * t.RowLength * (t.DType == SourceDType.F32 ? 4 : 2);
    }
    double secs = watch.Elapsed.TotalSeconds;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"read-meta: {src.Tensors.Count} tensors from {src.ShardCount} shards, {inBytes / 1e6:F0} MB in {secs:F1} s ({inBytes / 1e6 / secs:F0} MB/s input), checksum {checksum:G6}"));
    return 0;
}
if (args.Length < 2 || args[0] is not ("meta" or "hf"))
{
    Console.Error.WriteLine("usage: checkpoint-gen meta|hf OUTDIR [--dim N] [--layers N] [--heads N] [--kv-heads N] [--vocab N] [--multiple-of N] [--ffn-multiplier X] [--shards N] [--max-shard-mb N] [--seed N] [--zip64]");
    return 2;
}
var o = new Dictionary<string, string>();
bool zip64 = false;
for (int i = 2; i < args.Length; i++)
{
    if (args[i] == "--zip64") { zip64 = true; continue; }
    if (!args[i].StartsWith("--") || i + 1 >= args.Length) { Console.Error.WriteLine($"checkpoint-gen: bad argument '{args[i]}'"); return 2; }
    o[args[i][2..]] = args[++i];
}
int I(string k, int d) => o.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;
var spec = new RandomCheckpointSpec
{
    Dim = I("dim", 8192), Layers = I("layers", 2), Heads = I("heads", 64), KvHeads = I("kv-heads", 8),
    VocabSize = I("vocab", 32000), MultipleOf = I("multiple-of", 4096),
    FfnDimMultiplier = o.TryGetValue("ffn-multiplier", out var m) ? double.Parse(m, CultureInfo.InvariantCulture) : 1.3,
    Seed = (ulong)I("seed", 1), VocabFromTokenizer = true,
};
var sw = Stopwatch.StartNew();
if (args[0] == "meta") RandomCheckpointWriter.WriteMeta(spec, args[1], I("shards", 8), zip64);
else RandomCheckpointWriter.WriteHf(spec, args[1], I("max-shard-mb", 5000) * 1_000_000L);
long bytes = Directory.GetFiles(args[1]).Sum(f => new FileInfo(f).Length);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"checkpoint-gen: {args[0]} dim {spec.Dim}, {spec.Layers} layers, {spec.Heads}/{spec.KvHeads} heads, ffn {spec.FfnDim}, vocab {spec.VocabSize}: {bytes / 1e6:F0} MB in {sw.Elapsed.TotalSeconds:F1} s ({bytes / 1e6 / sw.Elapsed.TotalSeconds:F0} MB/s)"));
return 0;
