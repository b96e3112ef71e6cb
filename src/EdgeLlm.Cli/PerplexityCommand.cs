using System.Globalization;
using EdgeLlm.Generation;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm perplexity`: perplexity of a text file, computed as llama.cpp's perplexity tool does: the text is
/// tokenized once (with BOS), cut into chunks of CTX tokens, each chunk's first token replaced by BOS, and only
/// the predictions in the second half of each chunk are scored. Prints the running value per chunk, then
/// `PPL = value +/- error`.
/// </summary>
public sealed class PerplexityCommand : Command
{
    private static readonly OptionSpec File_ = new(["-f", "--file"], true, "FILE", "text file to score");
    private static readonly OptionSpec Chunks = new(["--chunks"], true, "N", "score at most N chunks (default: all)");

    public override string Name => "perplexity";
    public override string Summary => "perplexity of a text file, computed as llama.cpp's perplexity tool does";
    public override string Usage => "perplexity [MODEL | -m MODEL] -f FILE [-c CTX] [--chunks N] [-t THREADS]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, File_, Chunks, Threads, Ctx, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.ModelPositional();
        string path = args.GetString("-f") ?? throw new UsageException("give the text file with -f FILE");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: text file not found");
        int maxChunks = args.GetInt("--chunks", -1, -1);
        string text = File.ReadAllText(path);

        using var model = ModelOptions.Load(args, ctx);
        var tokenizer = Tokenizer.For(model);
        int nCtx = model.ContextSize;
        if (nCtx < 4) throw new UsageException($"context {nCtx} is too small to score (use -c 4 or more)");
        int[] tokens = tokenizer.Encode(text, addBos: true);
        int nChunks = tokens.Length / nCtx;
        if (maxChunks >= 0) nChunks = Math.Min(nChunks, maxChunks);
        if (nChunks < 1 || tokens.Length < 2 * nCtx)
            throw new EdgeLlmException($"{path}: {tokens.Length} tokens; perplexity needs at least 2 x CTX = {2 * nCtx} (lower -c)");

        int vocab = model.VocabSize;
        int first = nCtx / 2;
        var logits = new float[(long)nCtx * vocab];
        var chunk = new int[nCtx];
        double nll = 0, nll2 = 0;
        long count = 0;
        var inv = CultureInfo.InvariantCulture;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var progress = new ProgressLine(ctx, "perplexity", (done, total) => string.Format(inv, "chunk {0}/{1}{2}", done, total,
            done == 0 ? "" : string.Format(inv, ", {0:F0} s left", clock.Elapsed.TotalSeconds / done * (total - done))));
        progress.Report(0, nChunks);
        for (int c = 0; c < nChunks; c++)
        {
            Array.Copy(tokens, (long)c * nCtx, chunk, 0, nCtx);
            if (tokenizer.Vocab.AddBos && tokenizer.Vocab.Bos >= 0) chunk[0] = tokenizer.Vocab.Bos;
            model.Cache.Clear();
            model.Forward(chunk, 0, logits, allLogits: true);
            Generation.LogitCheck.RequireRows(model, logits, model.VocabSize);
            for (int j = first; j < nCtx - 1; j++)
            {
                int target = tokens[(long)c * nCtx + j + 1];
                double v = -LogSoftmaxAt(new ReadOnlySpan<float>(logits, j * vocab, vocab), target);
                nll += v;
                nll2 += v * v;
                count++;
            }
            ctx.Out.Write(string.Format(inv, "[{0}]{1:F4},", c + 1, Math.Exp(nll / count)));
            ctx.Out.Flush();
            progress.Report(c + 1, nChunks);
        }
        progress.Done();
        ctx.Out.WriteLine();
        double mean = nll / count;
        double variance = nll2 / count - mean * mean;
        double err = count > 1 && variance > 0 ? Math.Sqrt(variance / (count - 1)) : 0;
        double ppl = Math.Exp(mean);
        ctx.Err.WriteLine(string.Format(inv, "scored {0} tokens in {1} chunks of {2} in {3:F2} s", count, nChunks, nCtx, clock.Elapsed.TotalSeconds));
        ctx.Out.WriteLine(string.Format(inv, "PPL = {0:F4} +/- {1:F5}", ppl, ppl * err));
        return 0;
    }

    /// <summary>log softmax(logits)[target], computed in double with the max subtracted.</summary>
    internal static double LogSoftmaxAt(ReadOnlySpan<float> logits, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return logits[target] - max - Math.Log(sum);
    }
}
