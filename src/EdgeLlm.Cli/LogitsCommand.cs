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

    public override string Name => "logits";
    public override string Summary => "print the top-K logits at every position of a token sequence, as JSON lines";
    public override string Usage => "logits [-m MODEL] --tokens 1,2,3 [--top K] [-t THREADS] [-c CTX] [--device DEV]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, Tokens, Top, Threads, Ctx, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        string list = args.GetString("--tokens") ?? throw new UsageException("give the token ids with --tokens 1,2,3");
        int[] ids = ParseIds(list);
        int top = args.GetInt("--top", 10, 1);
        using var model = ModelOptions.Load(args, ctx, minContext: ids.Length);
        if (ids.Length > model.ContextSize)
            throw new UsageException($"{ids.Length} tokens do not fit in the context of {model.ContextSize} (raise -c)");
        foreach (int id in ids)
            if ((uint)id >= (uint)model.VocabSize) throw new UsageException($"token id {id} is outside the vocabulary of {model.VocabSize}");
        int vocab = model.VocabSize;
        var logits = new float[(long)ids.Length * vocab];
        model.Forward(ids, 0, logits, allLogits: true);
        Generation.LogitCheck.RequireRows(model, logits, model.VocabSize);
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
