using EdgeLlm.Backends.Cpu;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Slots;

/// <summary>
/// <see cref="CpuBackend.AttendSequences"/> (the server step's attention: one rotation of every row at its sequence's
/// position, each sequence's K/V stored into its own cache, one attention dispatch over all the sequences' work units,
/// the rows read in place) against what the per-op path gives each sequence alone: its rows copied to row 0 of buffers of
/// their own, <see cref="CpuBackend.Rope"/>, <see cref="CpuBackend.StoreKv"/> and <see cref="CpuBackend.Attention"/> on a
/// one-thread backend. The outputs and the stored cache rows must be the same bits, for f32, f16 and q8_0 caches, with
/// and without a sliding window and a softcap, in the normal and the NEOX rope layouts, on 1, 2 and 3 threads; the
/// sequences sit at different positions and one of them has several tokens (a prompt chunk beside decode tokens).
/// </summary>
public sealed class SequenceAttentionTests
{
    private const int HeadDim = 16, Heads = 4, KvHeads = 2, QDim = Heads * HeadDim, KvDim = KvHeads * HeadDim, Ctx = 48, Layers = 2;
    private static readonly (int Start, int Count)[] Seqs = [(5, 1), (0, 3), (17, 1), (30, 2), (9, 1)];

    public static TheoryData<KvCacheType, int, int, bool> Cases()
    {
        var d = new TheoryData<KvCacheType, int, int, bool>();
        foreach (var t in new[] { KvCacheType.F32, KvCacheType.F16, KvCacheType.Q8_0 })
            foreach (int threads in new[] { 1, 2, 3 })
            {
                d.Add(t, threads, 0, false);
                d.Add(t, threads, 6, true);
            }
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Batched_attention_gives_each_sequence_its_alone_bits(KvCacheType type, int threads, int window, bool neox)
    {
        var rope = new RopeSpec(HeadDim, HeadDim, 10000f, 1f, null, neox);
        var options = new AttentionOptions(1f / MathF.Sqrt(HeadDim), window == 0 ? 0f : 20f, window);
        const int layer = 1;
        int total = 0;
        foreach (var (_, n) in Seqs) total += n;
        var rng = new Random(77 + (int)type + window);
        float[] Random(int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 4 - 2); return a; }
        float[] q = Random(total * QDim), k = Random(total * KvDim), v = Random(total * KvDim);
        var history = new (float[] K, float[] V)[Seqs.Length];
        for (int s = 0; s < Seqs.Length; s++) history[s] = (Random(Seqs[s].Start * KvDim), Random(Seqs[s].Start * KvDim));

        // Batched, on `threads` threads.
        using var b = new CpuBackend(threads);
        b.Prepare(new BackendLimits(8, QDim, Ctx, HeadDim, HeadDim));
        var caches = new EdgeLlm.Compute.KvCache[Seqs.Length];
        var batch = new SequenceBatch[Seqs.Length];
        var kb = b.Allocate(8 * KvDim);
        var vb = b.Allocate(8 * KvDim);
        for (int s = 0; s < Seqs.Length; s++)
        {
            caches[s] = ((EdgeLlm.Compute.IBackend)b).CreateCache(Layers, Ctx, KvDim, type, type);
            Fill(b, caches[s], history[s], kb, vb);
            batch[s] = new SequenceBatch(caches[s], Seqs[s].Start, Seqs[s].Count);
        }
        var bq = b.Allocate(8 * QDim);
        var bk = b.Allocate(8 * KvDim);
        var bv = b.Allocate(8 * KvDim);
        var bd = b.Allocate(8 * QDim);
        b.CopyIn(q, bq, 0);
        b.CopyIn(k, bk, 0);
        b.CopyIn(v, bv, 0);
        // Twice with other positions first, so a cached rotation table of other positions would show.
        b.AttendSequences(bq, bk, bv, bd, batch[..2], layer, Heads, KvHeads, rope, options);
        b.CopyIn(q, bq, 0);
        b.CopyIn(k, bk, 0);
        b.AttendSequences(bq, bk, bv, bd, batch, layer, Heads, KvHeads, rope, options);
        var got = new float[total * QDim];
        b.CopyOut(bd, 0, got);

        // Each sequence alone, one thread, through the per-op path.
        using var a = new CpuBackend(1);
        a.Prepare(new BackendLimits(8, QDim, Ctx, HeadDim, HeadDim));
        var aq = a.Allocate(8 * QDim);
        var ak = a.Allocate(8 * KvDim);
        var av = a.Allocate(8 * KvDim);
        var ad = a.Allocate(8 * QDim);
        int row = 0;
        for (int s = 0; s < Seqs.Length; s++)
        {
            var (start, n) = Seqs[s];
            var cache = ((EdgeLlm.Compute.IBackend)a).CreateCache(Layers, Ctx, KvDim, type, type);
            Fill(a, cache, history[s], ak, av);
            a.CopyIn(q.AsSpan(row * QDim, n * QDim), aq, 0);
            a.CopyIn(k.AsSpan(row * KvDim, n * KvDim), ak, 0);
            a.CopyIn(v.AsSpan(row * KvDim, n * KvDim), av, 0);
            a.Rope(aq, n, Heads, start, rope);
            a.Rope(ak, n, KvHeads, start, rope);
            a.StoreKv(cache, layer, start, n, ak, av);
            a.Attention(aq, cache, layer, start, n, Heads, HeadDim, ad, options);
            var want = new float[n * QDim];
            a.CopyOut(ad, 0, want);
            for (int i = 0; i < want.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(want[i]) == BitConverter.SingleToInt32Bits(got[row * QDim + i]),
                    $"{type}, {threads} threads, window {window}: sequence {s} element {i}: {got[row * QDim + i]} vs alone {want[i]}");
            foreach (bool values in new[] { false, true })
            {
                long rowBytes = values ? cache.ValueRowBytes : cache.KeyRowBytes;
                var mine = new byte[(start + n) * rowBytes];
                var theirs = new byte[mine.Length];
                a.CacheRows(cache, layer, values, 0, start + n, mine, write: false);
                b.CacheRows(caches[s], layer, values, 0, start + n, theirs, write: false);
                Assert.True(mine.AsSpan().SequenceEqual(theirs), $"{type}: sequence {s}: the stored {(values ? "values" : "keys")} differ");
            }
            row += n;
        }
    }

    [Fact]
    public void A_sequence_past_its_cache_is_refused()
    {
        using var b = new CpuBackend(2);
        b.Prepare(new BackendLimits(8, QDim, Ctx, HeadDim, HeadDim));
        var rope = new RopeSpec(HeadDim, HeadDim, 10000f, 1f, null);
        var cache = ((EdgeLlm.Compute.IBackend)b).CreateCache(Layers, 16, KvDim, KvCacheType.F32, KvCacheType.F32);
        var x = b.Allocate(8 * QDim);
        var options = new AttentionOptions(0.25f, 0f, 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => b.AttendSequences(x, x, x, x, [new SequenceBatch(cache, 15, 2)], 0, Heads, KvHeads, rope, options));
        Assert.Throws<ArgumentException>(() => b.AttendSequences(x, x, x, x, [new SequenceBatch(cache, 0, 9)], 0, Heads, KvHeads, rope, options));
    }

    /// <summary>The sequence's earlier positions in both layers (layer 0 gets the same rows: only layer 1 is attended).</summary>
    private static void Fill(CpuBackend b, EdgeLlm.Compute.KvCache cache, (float[] K, float[] V) h, EdgeLlm.Compute.BackendBuffer kb, EdgeLlm.Compute.BackendBuffer vb)
    {
        int n = h.K.Length / KvDim;
        for (int p = 0; p < n; p++)
        {
            b.CopyIn(h.K.AsSpan(p * KvDim, KvDim), kb, 0);
            b.CopyIn(h.V.AsSpan(p * KvDim, KvDim), vb, 0);
            for (int l = 0; l < Layers; l++) b.StoreKv(cache, l, p, 1, kb, vb);
        }
    }
}
