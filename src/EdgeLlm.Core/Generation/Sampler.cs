using System.Numerics;

namespace EdgeLlm.Generation;

/// <summary>
/// Picks the next token from a row of logits with llama.cpp's default chain and semantics:
/// repetition/presence/frequency penalties over the last N tokens, top-k, top-p, min-p (all three on the
/// temperature-1 distribution), then temperature and a seeded draw from the softmax of what is left.
/// Temperature &lt;= 0 is greedy. Buffers are sized for the vocabulary at construction; <see cref="Sample"/>
/// does not allocate. Not thread-safe: one sampler per sequence.
/// </summary>
public sealed class Sampler
{
    /// <summary>A candidate token and its (possibly penalised, scaled) logit.</summary>
    internal struct Candidate
    {
        public int Id;
        public float Logit;
    }

    /// <summary>Higher logit first; equal logits by lower id, so every order is deterministic.</summary>
    private static class Descending
    {
        public static int Compare(in Candidate a, in Candidate b)
        {
            int c = b.Logit.CompareTo(a.Logit);
            return c != 0 ? c : a.Id.CompareTo(b.Id);
        }
    }

    private readonly Candidate[] _cand;
    private readonly int[] _counts;
    private Xoshiro256 _rng;

    public int VocabSize { get; }
    public SamplerOptions Options { get; }

    /// <summary>The seed actually used (the random one when the options asked for -1), for reproducing a run.</summary>
    public ulong Seed { get; private set; }

    public Sampler(int vocabSize, SamplerOptions? options = null)
    {
        if (vocabSize <= 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocabulary size must be positive");
        Options = options ?? new SamplerOptions();
        Options.Validate();
        VocabSize = vocabSize;
        _cand = new Candidate[vocabSize];
        _counts = new int[vocabSize];
        Reseed(ResolveSeed(Options));
    }

    /// <summary>
    /// The seed a sampler made from <paramref name="options"/> starts from: <see cref="SamplerOptions.Seed"/>, or a fresh
    /// random one when that is -1 (or llama.cpp's 0xFFFFFFFF). To report a random seed, resolve it first and pass it on
    /// pinned (<c>options with { Seed = (long)seed }</c>).
    /// </summary>
    public static ulong ResolveSeed(SamplerOptions options)
        => options.Seed == -1 || options.Seed == 0xFFFFFFFF ? RandomSeed() : unchecked((ulong)options.Seed);

    // Random.Shared is seeded by the runtime's own entropy source (System.Native), not by RandomNumberGenerator, which
    // on Linux goes through OpenSSL: a run must not need libssl (issue 14.2; a libc-only root aborted here).
    private static ulong RandomSeed()
    {
        Span<byte> b = stackalloc byte[8];
        Random.Shared.NextBytes(b);
        return BitConverter.ToUInt64(b);
    }

    /// <summary>Restarts the random stream from <paramref name="seed"/>.</summary>
    public void Reseed(ulong seed)
    {
        Seed = seed;
        _rng = new Xoshiro256(seed);
    }

    /// <summary>
    /// Chooses a token id. <paramref name="history"/> is the sequence so far (prompt and generated tokens,
    /// oldest first); the penalties look at its last <see cref="SamplerOptions.RepeatLastN"/> entries.
    /// </summary>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history) => Sample(logits, history, null);

    /// <summary>Draws among the surviving candidates at most this many times before masking the whole vocabulary.</summary>
    private const int GrammarRetries = 8;

    /// <summary>
    /// As <see cref="Sample(ReadOnlySpan{float}, ReadOnlySpan{int})"/>, restricted to the tokens
    /// <paramref name="constraint"/> allows. The unconstrained pick is checked first (usually all it costs);
    /// a refused pick is dropped from the surviving candidates and the draw repeated among the rest, up to
    /// <see cref="GrammarRetries"/> times; after that (or at once for greedy) the disallowed tokens are removed
    /// from the whole vocabulary right after the penalties, before top-k/top-p/min-p/temperature, and the draw
    /// is made again, as llama.cpp's common sampler does. Throws when the grammar allows no token.
    /// </summary>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history, TokenConstraint? constraint)
    {
        int n = Filter(logits, history, out bool greedy);
        if (greedy)
        {
            int best = _cand[0].Id;
            if (constraint is null || constraint.Allows(best)) return best;
        }
        else
        {
            for (int attempt = 0; attempt < GrammarRetries && n > 0; attempt++)
            {
                int pick = Draw(n);
                if (constraint is null || constraint.Allows(pick)) return pick;
                for (int i = 0; i < n; i++)
                    if (_cand[i].Id == pick)
                    {
                        _cand[i] = _cand[--n];
                        break;
                    }
            }
        }
        n = Filter(logits, history, out greedy, constraint);
        return greedy ? _cand[0].Id : Draw(n);
    }

    /// <summary>
    /// Runs the chain up to (and including) temperature. Leaves the surviving candidates in the first
    /// <c>return</c> entries of the candidate buffer; for greedy, the single winner.
    /// </summary>
    internal int Filter(ReadOnlySpan<float> logits, ReadOnlySpan<int> history, out bool greedy, TokenConstraint? mask = null)
    {
        if (logits.Length != VocabSize)
            throw new ArgumentException($"expected {VocabSize} logits (the vocabulary size), got {logits.Length}", nameof(logits));
        var o = Options;
        var cand = _cand;
        if (o.Temperature <= 0 && mask is null && !PenaltiesApply(o))
        {
            // Greedy with nothing to change the logits: the first highest one read in place, without copying the
            // vocabulary into the candidates (a server step samples every slot's row on the scheduler thread while
            // the workers wait). The loop below gives the same id; a row holding NaN takes it (its order rules).
            int first = FirstArgMax(logits);
            if (first >= 0)
            {
                cand[0].Id = first;
                cand[0].Logit = logits[first];
                greedy = true;
                return 1;
            }
        }
        for (int i = 0; i < cand.Length; i++)
        {
            cand[i].Id = i;
            cand[i].Logit = logits[i];
        }

        ApplyPenalties(history);

        int size = cand.Length;
        if (mask is not null)
        {
            bool[] allowed = mask.ComputeMask();
            int kept = 0;
            for (int i = 0; i < size; i++)
                if (allowed[cand[i].Id]) cand[kept++] = cand[i];
            if (kept == 0) throw new EdgeLlmException($"no token of the vocabulary continues the {mask.Matcher.Grammar.Name} grammar here");
            size = kept;
        }

        if (o.Temperature <= 0)
        {
            // Greedy: the first highest logit (truncation never removes it, so it is skipped).
            int best = 0;
            for (int i = 1; i < size; i++)
                if (cand[i].Logit > cand[best].Logit) best = i;
            cand[0] = cand[best];
            greedy = true;
            return 1;
        }
        greedy = false;

        bool sorted = false;

        if (o.TopK > 0)
        {
            int k = Math.Min(o.TopK, size);
            if (k < size) SelectTop(k, size);
            SortDescending(cand.AsSpan(0, k));
            size = k;
            sorted = true;
        }

        if (o.TopP < 1f)
        {
            if (!sorted)
            {
                SortDescending(cand.AsSpan(0, size));
                sorted = true;
            }
            // Softmax and running mass in float, as llama.cpp: keep through the first token that reaches p.
            float max = cand[0].Logit, sum = 0;
            for (int i = 0; i < size; i++) sum += MathF.Exp(cand[i].Logit - max);
            float cum = 0;
            for (int i = 0; i < size; i++)
            {
                cum += MathF.Exp(cand[i].Logit - max) / sum;
                if (cum >= o.TopP)
                {
                    size = i + 1;
                    break;
                }
            }
        }

        if (o.MinP > 0f)
        {
            // p_i >= MinP * p_max  <=>  logit_i >= max_logit + ln(MinP); order is kept.
            float max = float.NegativeInfinity;
            for (int i = 0; i < size; i++) max = MathF.Max(max, cand[i].Logit);
            float min = max + MathF.Log(o.MinP);
            int kept = 0;
            for (int i = 0; i < size; i++)
                if (cand[i].Logit >= min) cand[kept++] = cand[i];
            if (kept > 0) size = kept;
        }

        float invTemp = 1f / o.Temperature;
        if (o.Temperature != 1f)
            for (int i = 0; i < size; i++) cand[i].Logit *= invTemp;

        return size;
    }

    /// <summary>
    /// The uniform in [0, 1) that the next non-greedy draw of <see cref="Sample(ReadOnlySpan{float}, ReadOnlySpan{int})"/>
    /// would take from this sampler's stream, taken now: a backend that samples on the device
    /// (<see cref="Compute.IDeviceSampler"/>) gets it as an argument, so the random stream stays on the host and a device
    /// run draws the same numbers as a CPU run with the same seed (one per non-greedy token, none for greedy).
    /// </summary>
    public double NextUniform() => _rng.NextDouble();

    /// <summary>The first <paramref name="count"/> candidates after <see cref="Filter"/> (for tests and diagnostics).</summary>
    internal ReadOnlySpan<Candidate> Candidates(int count) => _cand.AsSpan(0, count);

    /// <summary>False when the penalties leave every logit as it is (<see cref="ApplyPenalties"/> returns at once).</summary>
    private static bool PenaltiesApply(SamplerOptions o) =>
        o.RepeatLastN != 0 && (o.RepeatPenalty != 1f || o.FrequencyPenalty != 0f || o.PresencePenalty != 0f);

    /// <summary>
    /// The first index of the largest value, what the scalar loop <c>if (x[i] &gt; x[best]) best = i</c> gives for a row
    /// without NaN (equal values, −0 and +0 included, keep the first); −1 when the row holds a NaN (the caller then runs
    /// that loop). Two vector passes: the maximum, then the first element equal to it.
    /// </summary>
    internal static int FirstArgMax(ReadOnlySpan<float> x)
    {
        int n = x.Length, w = Vector<float>.Count, i = 0;
        if (n == 0) return -1;
        float max = x[0];
        if (Vector.IsHardwareAccelerated && n >= w)
        {
            var vmax = new Vector<float>(x);
            var ordered = Vector<int>.AllBitsSet;
            for (; i <= n - w; i += w)
            {
                var v = new Vector<float>(x[i..]);
                ordered &= Vector.Equals(v, v); // false in a NaN lane
                vmax = Vector.Max(vmax, v);
            }
            if (!Vector.EqualsAll(ordered, Vector<int>.AllBitsSet)) return -1;
            max = vmax[0];
            for (int k = 1; k < w; k++) if (vmax[k] > max) max = vmax[k];
        }
        for (int k = i; k < n; k++)
        {
            if (float.IsNaN(x[k])) return -1;
            if (x[k] > max) max = x[k];
        }
        if (float.IsNaN(max)) return -1;
        i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var vm = new Vector<float>(max);
            for (; i <= n - w; i += w)
                if (Vector.EqualsAny(new Vector<float>(x[i..]), vm)) break;
        }
        for (; i < n; i++)
            if (x[i] == max) return i;
        return -1; // not reached: max is one of the values
    }

    private void ApplyPenalties(ReadOnlySpan<int> history)
    {
        var o = Options;
        if (!PenaltiesApply(o)) return;
        var window = o.RepeatLastN < 0 || history.Length <= o.RepeatLastN ? history : history[^o.RepeatLastN..];
        foreach (int t in window)
        {
            if ((uint)t >= (uint)VocabSize)
            {
                foreach (int u in window) if ((uint)u < (uint)VocabSize) _counts[u] = 0; // leave the buffer clean
                throw new ArgumentException($"history contains token id {t}, outside the vocabulary (0 to {VocabSize - 1})", nameof(history));
            }
            _counts[t]++;
        }
        foreach (int t in window)
        {
            int count = _counts[t];
            if (count == 0) continue; // already applied
            _counts[t] = 0;
            ref float l = ref _cand[t].Logit; // candidates are still in id order here
            l = l <= 0 ? l * o.RepeatPenalty : l / o.RepeatPenalty;
            l -= count * o.FrequencyPenalty + o.PresencePenalty;
        }
    }

    /// <summary>Moves the k best of the first <paramref name="size"/> candidates to the front (unordered), O(n log k).</summary>
    private void SelectTop(int k, int size)
    {
        var cand = _cand.AsSpan(0, size);
        // Heap with the worst kept candidate at the root over cand[0..k).
        for (int i = k / 2 - 1; i >= 0; i--) SiftDown(cand, i, k);
        for (int i = k; i < size; i++)
        {
            if (Descending.Compare(cand[i], cand[0]) < 0) // better than the worst kept
            {
                cand[0] = cand[i];
                SiftDown(cand, 0, k);
            }
        }
    }

    /// <summary>Heapsort, best first: no allocation and no comparer boxing (unlike Span.Sort with a comparer).</summary>
    private static void SortDescending(Span<Candidate> cand)
    {
        int n = cand.Length;
        for (int i = n / 2 - 1; i >= 0; i--) SiftDown(cand, i, n);
        for (int end = n - 1; end > 0; end--)
        {
            (cand[0], cand[end]) = (cand[end], cand[0]); // the worst left goes to the back
            SiftDown(cand, 0, end);
        }
    }

    /// <summary>Restores "every parent is worse than its children" below node i of heap cand[0..n).</summary>
    private static void SiftDown(Span<Candidate> cand, int i, int n)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, worst = i;
            if (l < n && Descending.Compare(cand[l], cand[worst]) > 0) worst = l;
            if (r < n && Descending.Compare(cand[r], cand[worst]) > 0) worst = r;
            if (worst == i) return;
            (cand[i], cand[worst]) = (cand[worst], cand[i]);
            i = worst;
        }
    }

    /// <summary>Draws from the softmax of the first <paramref name="size"/> candidates' logits.</summary>
    private int Draw(int size)
    {
        var cand = _cand;
        float max = float.NegativeInfinity;
        for (int i = 0; i < size; i++) max = MathF.Max(max, cand[i].Logit);
        double total = 0;
        for (int i = 0; i < size; i++) total += Math.Exp(cand[i].Logit - max);
        double u = _rng.NextDouble() * total;
        double cum = 0;
        for (int i = 0; i < size; i++)
        {
            cum += Math.Exp(cand[i].Logit - max);
            if (u < cum) return cand[i].Id;
        }
        return cand[size - 1].Id; // rounding: u landed on the very top
    }
}
