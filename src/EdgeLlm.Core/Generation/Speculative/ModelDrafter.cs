using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>
/// Drafting with a small model of the same vocabulary: it runs one token at a time after the accepted sequence,
/// choosing each draft token with the same sampler chain as the target (argmax when greedy, a draw from its chain
/// distribution q otherwise). Its KV cache follows the accepted sequence: before each step the longest prefix it
/// still holds is kept and only the tokens after it run (at most the last accepted draft and the target's token).
/// Drafting stops early when the draft's chosen token has probability below <see cref="PMin"/> (llama.cpp's
/// --draft-p-min), so a draft that is unsure costs little.
/// </summary>
public sealed class ModelDrafter : DraftSource
{
    private readonly LlamaModel _draft;
    private readonly bool _ownsModel;
    private readonly Sampler _sampler;
    private readonly int _maxDraft;
    private readonly float[] _logits;
    private readonly float[] _probs;
    private readonly int[] _tokens; // what the draft's cache holds (plus the drafts of the current step)
    private int _cached;            // leading entries of _tokens whose keys and values the draft's cache holds
    private Xoshiro256 _rng;

    /// <summary>Default of --draft-max (llama.cpp's).</summary>
    public const int DefaultMaxDraft = 16;

    /// <summary>Default of --draft-p-min (llama.cpp's).</summary>
    public const float DefaultPMin = 0.75f;

    public float PMin { get; }
    public LlamaModel Model => _draft;

    /// <param name="draft">the draft model; its vocabulary must equal the target's (see <see cref="CheckVocabulary"/>).</param>
    /// <param name="options">the sampler settings of the generation (the draft forms q with the same chain).</param>
    public ModelDrafter(LlamaModel draft, SamplerOptions options, int maxDraft = DefaultMaxDraft, float pMin = DefaultPMin, bool ownsModel = true)
    {
        if (maxDraft < 1) throw new ArgumentOutOfRangeException(nameof(maxDraft), $"draft length {maxDraft} must be at least 1");
        if (!(pMin >= 0 && pMin <= 1)) throw new ArgumentOutOfRangeException(nameof(pMin), $"draft p-min {pMin} must be in [0, 1]");
        _draft = draft;
        _ownsModel = ownsModel;
        _maxDraft = maxDraft;
        PMin = pMin;
        _sampler = new Sampler(draft.VocabSize, options);
        // A different stream from the target's, still fixed by the seed.
        _rng = new Xoshiro256(_sampler.Seed ^ 0x5EC0DE5EC0DEUL);
        _logits = new float[draft.VocabSize];
        _probs = new float[draft.VocabSize];
        _tokens = new int[draft.ContextSize];
    }

    public override string Name => $"draft model {_draft.File.Path} ({_draft.Config.LayerCount} layers, dim {_draft.Config.Dim}), up to {_maxDraft} tokens, p-min {PMin}";
    public override int MaxDraft => _maxDraft;
    public override bool HasDistribution => true;

    public override void Begin(ReadOnlySpan<int> prompt)
    {
        _cached = 0;
        _draft.Cache.Clear();
    }

    public override int Propose(ReadOnlySpan<int> history, int max, Span<int> drafts, Span<float> q)
    {
        int count = history.Length;
        int vocab = _draft.VocabSize;
        // Room in the draft's own context: the last draft token is never run, so count + max - 1 positions.
        max = Math.Min(Math.Min(Math.Min(max, _maxDraft), drafts.Length), _draft.ContextSize - count + 1);
        if (max <= 0 || count == 0) return 0;

        // Keep the longest prefix the cache still holds; at least the last token must run to get logits.
        int keep = 0, limit = Math.Min(_cached, count - 1);
        while (keep < limit && _tokens[keep] == history[keep]) keep++;
        history.CopyTo(_tokens);
        _draft.Forward(history[keep..], keep, _logits);
        _cached = count;
        LogitCheck.Require(_draft, _logits, count - 1);

        int n = 0;
        while (true)
        {
            var seen = new ReadOnlySpan<int>(_tokens, 0, count + n);
            var qRow = q.Slice(n * vocab, vocab);
            SpeculativeSampling.Distribution(_sampler, _logits, seen, qRow);
            int x;
            if (_sampler.Options.Temperature <= 0)
                x = qRow.IndexOf(1f);
            else
                x = SpeculativeSampling.Draw(qRow, ref _rng);
            // Confidence of the choice under the draft's plain softmax (for greedy q is a point mass, so use the logits).
            if (PMin > 0 && SoftmaxProbability(_logits, x) < PMin) break;
            drafts[n++] = x;
            _tokens[count + n - 1] = x;
            if (n == max) break;
            _draft.Forward(x, count + n - 1, _logits);
            _cached = count + n;
            LogitCheck.Require(_draft, _logits, count + n - 1);
        }
        return n;
    }

    private static float SoftmaxProbability(ReadOnlySpan<float> logits, int x)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++) max = MathF.Max(max, logits[i]);
        double total = 0;
        for (int i = 0; i < logits.Length; i++) total += Math.Exp(logits[i] - max);
        return (float)(Math.Exp(logits[x] - max) / total);
    }

    /// <summary>
    /// Refuses a draft whose vocabulary is not the target's: the same number of tokens and the same text for every id
    /// (a draft with other ids would propose tokens that mean something else). One line naming the draft file.
    /// </summary>
    public static void CheckVocabulary(Vocabulary target, Vocabulary draft, string draftPath, int targetLogits, int draftLogits)
    {
        if (draftLogits != targetLogits)
            throw new EdgeLlmException($"{draftPath}: the draft model's vocabulary has {draftLogits} tokens but the target's has {targetLogits}; a draft model needs the same vocabulary");
        if (draft.Count != target.Count)
            throw new EdgeLlmException($"{draftPath}: the draft model's tokenizer has {draft.Count} tokens but the target's has {target.Count}; a draft model needs the same vocabulary");
        for (int i = 0; i < target.Count; i++)
            if (!string.Equals(target.Token(i), draft.Token(i), StringComparison.Ordinal))
                throw new EdgeLlmException($"{draftPath}: token {i} is '{Escape(draft.Token(i))}' in the draft model but '{Escape(target.Token(i))}' in the target; a draft model needs the same vocabulary");
    }

    private static string Escape(string s) => s.Length > 40 ? s[..40] + "..." : s.Replace("\n", "\\n", StringComparison.Ordinal);

    public override void Dispose()
    {
        if (_ownsModel) _draft.Dispose();
    }
}
