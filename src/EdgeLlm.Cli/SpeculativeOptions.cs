using EdgeLlm.Backends;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli;

/// <summary>The speculative-decoding flags of `run`: --draft-model, --draft-max, --draft-p-min, --lookup.</summary>
public static class SpeculativeOptions
{
    public static readonly OptionSpec DraftModel = new(["--draft-model", "-md"], true, "FILE",
        "speculative decoding with a small draft model of the same vocabulary (output unchanged: greedy identical, sampling same distribution)");
    public static readonly OptionSpec DraftMax = new(["--draft-max"], true, "K",
        $"tokens the draft model proposes per step (default {ModelDrafter.DefaultMaxDraft})");
    public static readonly OptionSpec DraftPMin = new(["--draft-p-min"], true, "P",
        $"stop drafting when the draft's token has probability below P (default {ModelDrafter.DefaultPMin})");
    public static readonly OptionSpec Lookup = new(["--lookup"], true, "N",
        $"speculative decoding by prompt lookup: propose the N tokens that followed the latest earlier match of the last {LookupDrafter.DefaultMaxNgram}..1 tokens");

    public static OptionSpec[] Specs => [DraftModel, DraftMax, DraftPMin, Lookup];

    /// <summary>The draft source the flags ask for, or null for plain decoding. Loads the draft model like the target.</summary>
    public static DraftSource? Create(CliArgs args, CliContext ctx, LlamaModel target, Tokenizer targetTokenizer, SamplerOptions sampling)
    {
        string? draftPath = args.GetString("--draft-model");
        bool lookup = args.Has("--lookup");
        if (draftPath is not null && lookup) throw new UsageException("--draft-model and --lookup are two ways of drafting; give one");
        if (draftPath is null && (args.Has("--draft-max") || args.Has("--draft-p-min")))
            throw new UsageException("--draft-max and --draft-p-min need --draft-model");
        var log = ctx.Logger("speculative");
        if (lookup)
        {
            var l = new LookupDrafter(args.GetInt("--lookup", 0, 1, 256));
            log.LogInformation("{Name}", l.Name);
            return l;
        }
        if (draftPath is null) return null;

        int max = args.GetInt("--draft-max", ModelDrafter.DefaultMaxDraft, 1, 256);
        float pMin = args.GetFloat("--draft-p-min", ModelDrafter.DefaultPMin, 0f, 1f);
        string path = ModelPaths.Resolve(draftPath);
        var draft = LlamaModel.Load(path, new BackendOptions
        {
            Threads = args.GetInt("-t", 0, 0, 1024),
            ContextSize = target.ContextSize,
            Device = ModelOptions.DeviceOption(args),
            Load = ModelOptions.LoadOptions(args),
        });
        try
        {
            var draftTokenizer = Tokenizer.For(draft);
            ModelDrafter.CheckVocabulary(targetTokenizer.Vocab, draftTokenizer.Vocab, path, target.VocabSize, draft.VocabSize);
            var d = new ModelDrafter(draft, sampling, max, pMin);
            log.LogInformation("{Name}; {Device}", d.Name, draft.BackendDescription);
            return d;
        }
        catch
        {
            draft.Dispose();
            throw;
        }
    }

    /// <summary>One stderr line: drafted, accepted, acceptance rate, verification passes.</summary>
    public static string Summary(SpeculativeGenerator g)
        => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"speculative: {g.Drafted} drafted, {g.Accepted} accepted ({100 * g.AcceptanceRate:F1}%), {g.Steps} target passes");
}
