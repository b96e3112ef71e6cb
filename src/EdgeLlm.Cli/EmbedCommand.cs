using System.Globalization;
using System.Text;
using EdgeLlm.Generation;

namespace EdgeLlm.Cli;

/// <summary>`edgellm embed`: the pooled, L2-normalized embedding of a text, printed as one JSON array of floats.</summary>
public sealed class EmbedCommand : Command
{
    private static readonly OptionSpec Prompt = new(["-p", "--prompt"], true, "TEXT", "text to embed");
    private static readonly OptionSpec File_ = new(["-f", "--file"], true, "FILE", "read the text from a file");

    public override string Name => "embed";
    public override string Summary => "print the embedding of a text (mean of the last hidden states, or the model's pooling; normalized) as a JSON array";
    public override string Usage => "embed [-m MODEL] -p TEXT [-t THREADS] [-c CTX]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, Prompt, File_, Threads, Ctx, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        string text = PromptText.Read(args, "-p", "-f") ?? throw new UsageException("give the text with -p TEXT or -f FILE");
        if (text.Length == 0) throw new UsageException("the text to embed is empty");
        using var model = ModelOptions.Load(args, ctx);
        var embedder = new Embedder(model, Tokenizer.For(model));
        float[] e = embedder.Embed(text, out _);
        var sb = new StringBuilder(e.Length * 12);
        sb.Append('[');
        for (int i = 0; i < e.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(e[i].ToString("R", CultureInfo.InvariantCulture));
        }
        sb.Append(']');
        ctx.Out.WriteLine(sb.ToString());
        return 0;
    }
}
