using System.Globalization;
using System.Text;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm logits`: runs the given token ids through the model and prints, per position, the top-K
/// (id, logit) pairs as one JSON object per line: {"pos":0,"token":1,"top":[[403,17.0235],...]}.
/// </summary>
public sealed class LogitsCommand : Command
{
    private static readonly OptionSpec Tokens = new(["--tokens"], true, "IDS", "comma-separated token ids, e.g. 1,403,407");
    private static readonly OptionSpec Top = new(["--top"], true, "K", "pairs to print per position (default 10)");
    private static readonly OptionSpec Compare = new(["--compare"], true, "FILE", "compare with a file this command wrote (another device, engine or quantization; its tokens are used when --tokens is not given): prints top-1 agreement, the worst per-position NMSE and the largest difference over the file's ids");
    private static readonly OptionSpec Batch = new(["-b", "--batch-size"], true, "N", "tokens per forward pass (default: the whole sequence, in batches of the model's largest); 1 = the decode path, token by token");

    public override string Name => "logits";
    public override string Summary => "print the top-K logits at every position of a token sequence, as JSON lines";
    public override string Usage => "logits [-m MODEL] (--tokens 1,2,3 | --compare FILE) [--top K] [-b BATCH] [-t THREADS] [-c CTX] [--device DEV]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, Tokens, Top, Compare, Batch, Threads, Ctx, Device, Mmap, NoMmap, Mlock, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        string? comparePath = args.GetString("--compare");
        LogitsReference? reference = comparePath is null ? null : LogitsReference.Read(comparePath);
        string? list = args.GetString("--tokens");
        int[] ids = list is not null ? ParseIds(list)
            : reference?.Tokens ?? throw new UsageException("give the token ids with --tokens 1,2,3 (or a file to compare with, --compare FILE)");
        if (reference is not null && !ids.AsSpan().SequenceEqual(reference.Tokens))
            throw new UsageException($"--tokens differ from the {reference.Tokens.Length} tokens of {comparePath}");
        int top = args.GetInt("--top", 10, 1);
        int batch = args.GetInt("-b", 0, 1, 1 << 16);
        using var model = ModelOptions.Load(args, ctx, minContext: ids.Length);
        if (ids.Length > model.ContextSize)
            throw new UsageException($"{ids.Length} tokens do not fit in the context of {model.ContextSize} (raise -c)");
        foreach (int id in ids)
            if ((uint)id >= (uint)model.VocabSize) throw new UsageException($"token id {id} is outside the vocabulary of {model.VocabSize}");
        int vocab = model.VocabSize;
        var logits = new float[(long)ids.Length * vocab];
        int step = batch == 0 ? ids.Length : Math.Min(batch, model.MaxBatch);
        for (int done = 0; done < ids.Length; done += step)
        {
            int nb = Math.Min(step, ids.Length - done);
            model.Forward(ids.AsSpan(done, nb), done, logits.AsSpan((int)((long)done * vocab), nb * vocab), allLogits: true);
        }
        Generation.LogitCheck.RequireRows(model, logits, model.VocabSize);
        if (reference is not null)
        {
            ctx.Out.WriteLine(reference.CompareWith(logits, vocab, comparePath!).ToString());
            return 0;
        }
        var inv = CultureInfo.InvariantCulture;
        var order = new int[vocab];
        var sb = new StringBuilder();
        for (int p = 0; p < ids.Length; p++)
        {
            var row = new ReadOnlySpan<float>(logits, p * vocab, vocab);
            int k = TopK(row, Math.Min(top, vocab), order);
            sb.Clear().Append("{\"pos\":").Append(p).Append(",\"token\":").Append(ids[p]).Append(",\"top\":[");
            for (int i = 0; i < k; i++)
            {
                if (i > 0) sb.Append(',');
                sb.Append('[').Append(order[i]).Append(',').Append(row[order[i]].ToString("R", inv)).Append(']');
            }
            sb.Append("]}");
            ctx.Out.WriteLine(sb.ToString());
        }
        return 0;
    }

    /// <summary>The indices of the k largest values, largest first (ties: lower id first).</summary>
    internal static int TopK(ReadOnlySpan<float> row, int k, int[] result)
    {
        int n = 0;
        for (int id = 0; id < row.Length; id++)
        {
            float v = row[id];
            if (n == k && !(v > row[result[k - 1]])) continue;
            int i = n < k ? n++ : k - 1;
            while (i > 0 && v > row[result[i - 1]]) { result[i] = result[i - 1]; i--; }
            result[i] = id;
        }
        return n;
    }

    internal static int[] ParseIds(string list)
    {
        var parts = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UsageException("--tokens is empty");
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
                throw new UsageException($"--tokens: '{parts[i]}' is not a token id");
        return ids;
    }
}
