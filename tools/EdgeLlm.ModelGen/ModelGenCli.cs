using System.Globalization;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.ModelGen;

/// <summary>
/// `edgellm-modelgen`: command line over <see cref="ModelGenerator"/>. Every failure is one line on stderr
/// (exit 2 for a command-line mistake, 1 for anything else).
/// </summary>
public static class ModelGenCli
{
    public static readonly string Usage =
        "usage: edgellm-modelgen -o FILE [--shape NAME] [--arch ARCH] [--dim N] [--layers N] [--heads N] [--kv-heads N]\n" +
        "                        [--head-dim N] [--ffn N] [--vocab N] [--ctx N] [--type TYPE]\n" +
        "                        [--output-type TYPE] [--seed S] [--tokenizer FILE] [-j THREADS] [-q]\n\n" +
        "Writes a random-weight GGUF model of any family the engine runs. Same options -> identical bytes.\n\n" +
        "  -o, --output FILE    file to write (through FILE.partial, renamed when complete)\n" +
        "  --shape NAME         preset (default tiny): tiny = dim 256, 2 layers, 4/2 heads, ffn 512, vocab 512;\n" +
        "                       1.1b = 2048, 22, 32/4, 5632, 32000; 7b = 4096, 32, 32/32, 11008, 32000;\n" +
        "                       70b = 8192, 80, 64/8, 28672, 32000 (all llama);\n" +
        "                       llama3.2-1b = 2048, 16, 32/8, 8192, 128256, tied, rope_freqs;\n" +
        "                       qwen2.5-1.5b = qwen2 1536, 28, 12/2, 8960, 151936, tied;\n" +
        "                       qwen3-1.7b = qwen3 2048, 28, 16/8 x 128, 6144, 151936, tied;\n" +
        "                       phi3-mini = phi3 3072, 32, 32/32, 8192, 32064;\n" +
        "                       gemma2-2b = gemma2 2304, 26, 8/4 x 256, 9216, 256000, window 4096;\n" +
        "                       gemma3-1b = gemma3 1152, 26, 4/1 x 256, 6912, 262144, window 512\n" +
        "  --arch ARCH          family layout and metadata (default: the preset's): " + string.Join(", ", LlamaConfig.SupportedArchitectures) + "\n" +
        "  --dim --layers --heads --kv-heads --head-dim --ffn --vocab --ctx N   override one number of the preset\n" +
        "  --type TYPE          weight format (default q4_0): " + string.Join(", ", WeightFormats.Names) + ";\n" +
        "                       quantized formats except q8_0 store output.weight as Q6_K like llama.cpp;\n" +
        "                       q4_k_m and q5_k_m are llama.cpp's Q4_K_M and Q5_K_M mixes\n" +
        "  --output-type TYPE   type of output.weight instead (any --type but the mixes)\n" +
        "  --seed S             unsigned 64-bit seed (default 1)\n" +
        "  --tokenizer FILE     copy tokenizer.* from this GGUF (default: tests/data/ggml-vocab-llama-spm.gguf for\n" +
        "                       vocab 32000, else a synthetic SentencePiece vocab)\n" +
        "  -j, --threads N      threads drawing weights (default: all cores; the output does not depend on it)\n" +
        "  -q, --quiet          no progress on stderr\n";

    private sealed class UsageError(string message) : Exception(message);

    private static readonly string[] ValueOptions =
        ["-o", "--output", "--shape", "--arch", "--head-dim", "--dim", "--layers", "--heads", "--kv-heads", "--ffn", "--vocab", "--ctx",
         "--type", "--output-type", "--seed", "--tokenizer", "-j", "--threads"];

    public static int Execute(string[] args, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            bool quiet = false;
            for (int i = 0; i < args.Length; i++)
            {
                string a = args[i];
                if (a is "-h" or "--help") { stdout.Write(Usage); return 0; }
                if (a is "-q" or "--quiet") { quiet = true; continue; }
                if (Array.IndexOf(ValueOptions, a) < 0)
                    throw new UsageError(a.StartsWith('-') ? $"unknown option '{a}'" : $"unexpected argument '{a}'");
                if (i + 1 >= args.Length) throw new UsageError($"option '{a}' needs a value");
                string key = a switch { "-o" => "--output", "-j" => "--threads", _ => a };
                values[key] = args[++i];
            }
            var options = Parse(values);
            string path = values.GetValueOrDefault("--output") ?? throw new UsageError("give the file to write with -o FILE");

            int lastTenth = -1;
            Action<long, long>? progress = quiet ? null : (done, total) =>
            {
                int tenth = (int)(done * 10 / Math.Max(1, total));
                if (tenth == lastTenth) return;
                lastTenth = tenth;
                stderr.WriteLine($"edgellm-modelgen: {tenth * 10}% ({done / (1 << 20)} / {total / (1 << 20)} MiB)");
            };
            var summary = ModelGenerator.Write(options, path, progress);
            var inv = CultureInfo.InvariantCulture;
            double secs = summary.Elapsed.TotalSeconds;
            stdout.WriteLine(string.Format(inv,
                "wrote {0}: {1}, {2} ({3} tensors, {4:N0} bytes, {5:F2} GiB) in {6:F1} s ({7:F0} MB/s); vocab: {8}",
                summary.Path, options.Shape, WeightFormats.Name(options.Format), summary.TensorCount, summary.FileBytes,
                summary.FileBytes / (double)(1L << 30), secs, summary.FileBytes / 1e6 / Math.Max(secs, 1e-9), summary.VocabOrigin));
            return 0;
        }
        catch (UsageError e)
        {
            stderr.WriteLine($"edgellm-modelgen: {e.Message} (see --help)");
            return 2;
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException or InvalidDataException or GgufFormatException)
        {
            stderr.WriteLine($"edgellm-modelgen: error: {e.Message.ReplaceLineEndings(" ")}");
            return 1;
        }
    }

    /// <summary>Turns option values into generator options; UsageError names the bad option.</summary>
    private static ModelGenOptions Parse(Dictionary<string, string> v)
    {
        string shapeName = v.GetValueOrDefault("--shape") ?? "tiny";
        var shape = ModelShape.Preset(shapeName)
            ?? throw new UsageError($"unknown shape '{shapeName}' (expected {string.Join(", ", ModelShape.PresetNames)})");
        if (v.TryGetValue("--arch", out string? arch))
        {
            if (Array.IndexOf(LlamaConfig.SupportedArchitectures, arch) < 0)
                throw new UsageError($"unknown architecture '{arch}' (expected {string.Join(", ", LlamaConfig.SupportedArchitectures)})");
            shape = shape with { Arch = arch };
        }
        shape = shape with
        {
            KeyLength = v.ContainsKey("--head-dim") ? Int(v, "--head-dim", 0) : shape.KeyLength,
            Dim = Int(v, "--dim", shape.Dim),
            Layers = Int(v, "--layers", shape.Layers),
            Heads = Int(v, "--heads", shape.Heads),
            KvHeads = Int(v, "--kv-heads", shape.KvHeads),
            Ffn = Int(v, "--ffn", shape.Ffn),
            Vocab = Int(v, "--vocab", shape.Vocab),
            Context = Int(v, "--ctx", shape.Context),
        };
        if (shape.Problem() is { } why) throw new UsageError($"invalid shape: {why}");

        var format = WeightFormat.Q4_0;
        if (v.TryGetValue("--type", out string? t) && !WeightFormats.TryParse(t, out format))
            throw new UsageError($"unknown type '{t}' (expected {string.Join(", ", WeightFormats.Names)})");
        GgmlType? outputType = null;
        if (v.TryGetValue("--output-type", out string? ot))
        {
            if (!WeightFormats.TryParse(ot, out var of) || of.Mix)
                throw new UsageError($"unknown output type '{ot}' (expected {string.Join(", ", WeightFormats.Names.Except(WeightFormats.MixNames))})");
            outputType = WeightFormats.BaseType(of);
        }
        ulong seed = 1;
        if (v.TryGetValue("--seed", out string? s) && !ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out seed))
            throw new UsageError($"option '--seed' expects an unsigned integer, got '{s}'");
        int threads = Int(v, "--threads", 0, max: 1024);
        return new ModelGenOptions
        {
            Shape = shape,
            Format = format,
            Seed = seed,
            OutputType = outputType,
            TokenizerFile = v.GetValueOrDefault("--tokenizer"),
            Threads = threads,
            Name = $"random-{shape.Arch}-{shapeName}-{WeightFormats.Name(format)}",
        };
    }

    private static int Int(Dictionary<string, string> v, string name, int fallback, int max = int.MaxValue)
    {
        if (!v.TryGetValue(name, out string? s)) return fallback;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x))
            throw new UsageError($"option '{name}' expects an integer, got '{s}'");
        if (x < 1 || x > max) throw new UsageError($"option '{name}' must be between 1 and {max}, got {x}");
        return x;
    }
}
