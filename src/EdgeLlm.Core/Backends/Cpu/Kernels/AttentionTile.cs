using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The three steps of attention for one tile of up to <see cref="Lanes"/> query rows that share a KV head, with
/// rows in vector lanes: the queries are transposed once into qt[d][lane], so a score block is a small matrix
/// product (each key element broadcast once for all rows of the tile), the softmax runs down the key axis with
/// each lane a row (vectorized exp, per-row sums accumulated key by key), and out = P·V keeps 4 rows × up to
/// 4 vectors of the head in registers while streaming the value rows once per 4 rows.
/// Every output element goes through the same sequence of fused operations whichever rows share its tile and
/// whichever rung runs it: score = (Σ_d fma, d ascending) · scale; softmax max over the row's keys, e = exp(s − max)
/// (masked keys give exactly 0), sum and Σ_j e_j·v_j accumulated with j ascending (a masked key adds an exact 0),
/// out = acc · (1 / sum). So a row's result does not depend on the batch it came in or the thread count.
/// </summary>
internal static unsafe class AttentionTile
{
    /// <summary>Rows per tile, and the float stride of a row of qt and of the score matrix.</summary>
    public const int Lanes = 32;

    /// <summary>
    /// st[j][lane] = scale · Σ_d qt[d][lane] · k_j[d] for keys j in [0, n) and lanes [0, chunks · TS.Count).
    /// Keys go in blocks of 8 (or 4); a count that is not a multiple ends with one more block over the last 8 (4) keys,
    /// which recomputes and stores again some scores of the block before it, through the same operations, so the same
    /// bits (a key alone would be a chain of headDim dependent fused steps).
    /// </summary>
    /// <paramref name="v"/> (a one-vector tile, such as a decode token's, over an f32 cache): the value rows of the same
    /// keys, kStride apart, prefetched for the value step with the key rows two blocks ahead (<see cref="ScoresPair"/>).
    public static void Scores<TS, TV>(float* qt, float* k, long kStride, int headDim, int n, int chunks, float scale, float* st, float* v = null)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        TV vs = TS.Broadcast(scale);
        int c = 0;
        for (; c + 2 <= chunks; c += 2)
        {
            float* q = qt + c * w;
            float* s = st + c * w;
            int j = 0;
            if (w >= 16 && n >= 8)
            {
                for (; j + 8 <= n; j += 8) Block2x8<TS, TV>(q, k + j * kStride, kStride, headDim, vs, s + j * Lanes);
                if (j < n) Block2x8<TS, TV>(q, k + (n - 8) * kStride, kStride, headDim, vs, s + (n - 8) * Lanes); // the last 8 keys again
                j = n;
            }
            if (n >= 4)
            {
                for (; j + 4 <= n; j += 4) Block2x4<TS, TV>(q, k + j * kStride, kStride, headDim, vs, s + j * Lanes);
                if (j < n) Block2x4<TS, TV>(q, k + (n - 4) * kStride, kStride, headDim, vs, s + (n - 4) * Lanes);
                j = n;
            }
            for (; j < n; j++)
            {
                float* kj = k + j * kStride;
                TV a0 = TS.Zero, a1 = TS.Zero;
                for (int d = 0; d < headDim; d++)
                {
                    TV b = TS.Broadcast(kj[d]);
                    a0 = TS.Fma(TS.Load(q + d * Lanes), b, a0);
                    a1 = TS.Fma(TS.Load(q + d * Lanes + w), b, a1);
                }
                TS.Store(TS.Mul(a0, vs), s + j * Lanes);
                TS.Store(TS.Mul(a1, vs), s + j * Lanes + w);
            }
        }
        if (c < chunks)
        {
            float* q = qt + c * w;
            float* s = st + c * w;
            int j = 0;
            if (n >= 8 && chunks == 1 && v != null && Sse.IsSupported)
            {
                int lines = (headDim + 15) / 16;
                for (int key = 0; key < Math.Min(n, 16); key++)
                    for (int l = 0; l < lines; l++) Sse.Prefetch0(k + key * kStride + l * 16);
                for (; j + 8 <= n; j += 8)
                    Block1x8Prefetch<TS, TV>(q, k + j * kStride, kStride, headDim, vs, s + j * Lanes, k + (j + 16) * kStride, v + j * kStride, lines);
                if (j < n) Block1x8Prefetch<TS, TV>(q, k + (n - 8) * kStride, kStride, headDim, vs, s + (n - 8) * Lanes, null, v + (n - 8) * kStride, lines);
                j = n;
            }
            if (n >= 8)
            {
                for (; j + 8 <= n; j += 8) Block1x8<TS, TV>(q, k + j * kStride, kStride, headDim, vs, s + j * Lanes);
                if (j < n) Block1x8<TS, TV>(q, k + (n - 8) * kStride, kStride, headDim, vs, s + (n - 8) * Lanes); // the last 8 keys again
                j = n;
            }
            for (; j < n; j++)
            {
                float* kj = k + j * kStride;
                TV a0 = TS.Zero;
                for (int d = 0; d < headDim; d++) a0 = TS.Fma(TS.Load(q + d * Lanes), TS.Broadcast(kj[d]), a0);
                TS.Store(TS.Mul(a0, vs), s + j * Lanes);
            }
        }
    }

    private static void Block2x8<TS, TV>(float* q, float* k, long ks, int headDim, TV vs, float* s)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = a00, a02 = a00, a03 = a00, a04 = a00, a05 = a00, a06 = a00, a07 = a00;
        TV a10 = a00, a11 = a00, a12 = a00, a13 = a00, a14 = a00, a15 = a00, a16 = a00, a17 = a00;
        for (int d = 0; d < headDim; d++)
        {
            TV x0 = TS.Load(q + d * Lanes), x1 = TS.Load(q + d * Lanes + w);
            float* kd = k + d;
            TV b = TS.Broadcast(kd[0]); a00 = TS.Fma(x0, b, a00); a10 = TS.Fma(x1, b, a10);
            b = TS.Broadcast(kd[ks]); a01 = TS.Fma(x0, b, a01); a11 = TS.Fma(x1, b, a11);
            b = TS.Broadcast(kd[2 * ks]); a02 = TS.Fma(x0, b, a02); a12 = TS.Fma(x1, b, a12);
            b = TS.Broadcast(kd[3 * ks]); a03 = TS.Fma(x0, b, a03); a13 = TS.Fma(x1, b, a13);
            b = TS.Broadcast(kd[4 * ks]); a04 = TS.Fma(x0, b, a04); a14 = TS.Fma(x1, b, a14);
            b = TS.Broadcast(kd[5 * ks]); a05 = TS.Fma(x0, b, a05); a15 = TS.Fma(x1, b, a15);
            b = TS.Broadcast(kd[6 * ks]); a06 = TS.Fma(x0, b, a06); a16 = TS.Fma(x1, b, a16);
            b = TS.Broadcast(kd[7 * ks]); a07 = TS.Fma(x0, b, a07); a17 = TS.Fma(x1, b, a17);
        }
        TS.Store(TS.Mul(a00, vs), s); TS.Store(TS.Mul(a10, vs), s + w);
        TS.Store(TS.Mul(a01, vs), s + Lanes); TS.Store(TS.Mul(a11, vs), s + Lanes + w);
        TS.Store(TS.Mul(a02, vs), s + 2 * Lanes); TS.Store(TS.Mul(a12, vs), s + 2 * Lanes + w);
        TS.Store(TS.Mul(a03, vs), s + 3 * Lanes); TS.Store(TS.Mul(a13, vs), s + 3 * Lanes + w);
        TS.Store(TS.Mul(a04, vs), s + 4 * Lanes); TS.Store(TS.Mul(a14, vs), s + 4 * Lanes + w);
        TS.Store(TS.Mul(a05, vs), s + 5 * Lanes); TS.Store(TS.Mul(a15, vs), s + 5 * Lanes + w);
        TS.Store(TS.Mul(a06, vs), s + 6 * Lanes); TS.Store(TS.Mul(a16, vs), s + 6 * Lanes + w);
        TS.Store(TS.Mul(a07, vs), s + 7 * Lanes); TS.Store(TS.Mul(a17, vs), s + 7 * Lanes + w);
    }

    private static void Block2x4<TS, TV>(float* q, float* k, long ks, int headDim, TV vs, float* s)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        for (int d = 0; d < headDim; d++)
        {
            TV x0 = TS.Load(q + d * Lanes), x1 = TS.Load(q + d * Lanes + w);
            float* kd = k + d;
            TV b = TS.Broadcast(kd[0]); a00 = TS.Fma(x0, b, a00); a10 = TS.Fma(x1, b, a10);
            b = TS.Broadcast(kd[ks]); a01 = TS.Fma(x0, b, a01); a11 = TS.Fma(x1, b, a11);
            b = TS.Broadcast(kd[2 * ks]); a02 = TS.Fma(x0, b, a02); a12 = TS.Fma(x1, b, a12);
            b = TS.Broadcast(kd[3 * ks]); a03 = TS.Fma(x0, b, a03); a13 = TS.Fma(x1, b, a13);
        }
        TS.Store(TS.Mul(a00, vs), s); TS.Store(TS.Mul(a10, vs), s + w);
        TS.Store(TS.Mul(a01, vs), s + Lanes); TS.Store(TS.Mul(a11, vs), s + Lanes + w);
        TS.Store(TS.Mul(a02, vs), s + 2 * Lanes); TS.Store(TS.Mul(a12, vs), s + 2 * Lanes + w);
        TS.Store(TS.Mul(a03, vs), s + 3 * Lanes); TS.Store(TS.Mul(a13, vs), s + 3 * Lanes + w);
    }

    private static void Block1x8<TS, TV>(float* q, float* k, long ks, int headDim, TV vs, float* s)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        TV a0 = TS.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < headDim; d++)
        {
            TV x = TS.Load(q + d * Lanes);
            float* kd = k + d;
            a0 = TS.Fma(x, TS.Broadcast(kd[0]), a0);
            a1 = TS.Fma(x, TS.Broadcast(kd[ks]), a1);
            a2 = TS.Fma(x, TS.Broadcast(kd[2 * ks]), a2);
            a3 = TS.Fma(x, TS.Broadcast(kd[3 * ks]), a3);
            a4 = TS.Fma(x, TS.Broadcast(kd[4 * ks]), a4);
            a5 = TS.Fma(x, TS.Broadcast(kd[5 * ks]), a5);
            a6 = TS.Fma(x, TS.Broadcast(kd[6 * ks]), a6);
            a7 = TS.Fma(x, TS.Broadcast(kd[7 * ks]), a7);
        }
        TS.Store(TS.Mul(a0, vs), s);
        TS.Store(TS.Mul(a1, vs), s + Lanes);
        TS.Store(TS.Mul(a2, vs), s + 2 * Lanes);
        TS.Store(TS.Mul(a3, vs), s + 3 * Lanes);
        TS.Store(TS.Mul(a4, vs), s + 4 * Lanes);
        TS.Store(TS.Mul(a5, vs), s + 5 * Lanes);
        TS.Store(TS.Mul(a6, vs), s + 6 * Lanes);
        TS.Store(TS.Mul(a7, vs), s + 7 * Lanes);
    }

    /// <summary>
    /// Rows [0, rows) of a tile, row r at src + r · srcStride (headDim floats), into lanes lane0 + r of qt[d][lane]
    /// (d &lt; headDim): blocks of 8 rows by 8 × 8 in-register transposes where AVX is there, the rest one float at a time.
    /// Moves bits only.
    /// </summary>
    public static void TransposeRows(float* src, long srcStride, int rows, int headDim, float* qt, int lane0)
    {
        int r = 0;
        if (Avx.IsSupported && headDim % 8 == 0)
            for (; r + 8 <= rows; r += 8)
            {
                float* a = src + r * srcStride;
                for (int d = 0; d < headDim; d += 8)
                {
                    Vector256<float> x0 = Avx.LoadVector256(a + d), x1 = Avx.LoadVector256(a + srcStride + d);
                    Vector256<float> x2 = Avx.LoadVector256(a + 2 * srcStride + d), x3 = Avx.LoadVector256(a + 3 * srcStride + d);
                    Vector256<float> x4 = Avx.LoadVector256(a + 4 * srcStride + d), x5 = Avx.LoadVector256(a + 5 * srcStride + d);
                    Vector256<float> x6 = Avx.LoadVector256(a + 6 * srcStride + d), x7 = Avx.LoadVector256(a + 7 * srcStride + d);
                    Vector256<float> t0 = Avx.UnpackLow(x0, x1), t1 = Avx.UnpackHigh(x0, x1), t2 = Avx.UnpackLow(x2, x3), t3 = Avx.UnpackHigh(x2, x3);
                    Vector256<float> t4 = Avx.UnpackLow(x4, x5), t5 = Avx.UnpackHigh(x4, x5), t6 = Avx.UnpackLow(x6, x7), t7 = Avx.UnpackHigh(x6, x7);
                    Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
                    Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
                    float* o = qt + d * Lanes + lane0 + r;
                    Avx.Store(o, Avx.Permute2x128(u0, u4, 0x20));
                    Avx.Store(o + Lanes, Avx.Permute2x128(u1, u5, 0x20));
                    Avx.Store(o + 2 * Lanes, Avx.Permute2x128(u2, u6, 0x20));
                    Avx.Store(o + 3 * Lanes, Avx.Permute2x128(u3, u7, 0x20));
                    Avx.Store(o + 4 * Lanes, Avx.Permute2x128(u0, u4, 0x31));
                    Avx.Store(o + 5 * Lanes, Avx.Permute2x128(u1, u5, 0x31));
                    Avx.Store(o + 6 * Lanes, Avx.Permute2x128(u2, u6, 0x31));
                    Avx.Store(o + 7 * Lanes, Avx.Permute2x128(u3, u7, 0x31));
                }
            }
        for (; r < rows; r++)
        {
            float* a = src + r * srcStride;
            for (int d = 0; d < headDim; d++) qt[d * Lanes + lane0 + r] = a[d];
        }
    }

    /// <summary>
    /// The rotary embedding of a tile whose rows are all one token's, in place in qt across lanes [0, chunks · TS.Count):
    /// pair i (dims 2i, 2i + 1, or i, i + half with <paramref name="neox"/>) of every lane rotated by c[i], s[i] as
    /// x0 · c − x1 · s and x0 · s + x1 · c, the float operations of <see cref="Rope.Rotate"/>, so the same bits.
    /// </summary>
    public static void RotateLanes<TS, TV>(float* qt, int chunks, float* c, float* s, int half, bool neox)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        for (int i = 0; i < half; i++)
        {
            float* p0 = qt + (neox ? i : 2 * i) * Lanes, p1 = qt + (neox ? i + half : 2 * i + 1) * Lanes;
            TV vc = TS.Broadcast(c[i]), vs = TS.Broadcast(s[i]);
            for (int l = 0; l < chunks * w; l += w)
            {
                TV x0 = TS.Load(p0 + l), x1 = TS.Load(p1 + l);
                TS.Store(TS.Sub(TS.Mul(x0, vc), TS.Mul(x1, vs)), p0 + l);
                TS.Store(TS.Add(TS.Mul(x0, vs), TS.Mul(x1, vc)), p1 + l);
            }
        }
    }

    /// <summary>
    /// The scores of two KV heads in one 16-lane vector: st[j][lane] = scale · Σ_d qt[d][lane] · k_j[d + (lane &lt; 8 ? 0 :
    /// <paramref name="second"/>)] for keys j in [0, n) and lanes [0, 16): lanes 0..7 against the first head's keys, lanes
    /// 8..15 against the second head's (<paramref name="second"/> floats further in each key row). Each lane's score goes
    /// through the same fused steps as in <see cref="Scores"/> (d ascending, then the scale), so the same bits.
    /// A decode step reads the cache rows from memory (a step's weights stream through the caches between two layers'
    /// attentions), so the blocks prefetch as they go: the key rows two blocks ahead, and the value rows
    /// (<paramref name="v"/>, kStride apart, the two heads side by side as in k) of their own keys for the value step.
    /// </summary>
    public static void ScoresPair(float* qt, float* k, long kStride, long second, int headDim, int n, float scale, float* st, float* v)
    {
        var vs = Vector512.Create(scale);
        var upper = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1).AsSingle();
        int j = 0;
        if (n >= 8)
        {
            int lines = (int)((second + headDim + 15) / 16); // cache lines of a key row's two heads
            if (Sse.IsSupported)
                for (int key = 0; key < Math.Min(n, 16); key++)
                    for (int l = 0; l < lines; l++) Sse.Prefetch0(k + key * kStride + l * 16);
            for (; j + 8 <= n; j += 8)
                PairBlock8(qt, k + j * kStride, kStride, second, headDim, vs, upper, st + j * Lanes, k + (j + 16) * kStride, v + j * kStride, lines);
            if (j < n) PairBlock8(qt, k + (n - 8) * kStride, kStride, second, headDim, vs, upper, st + (n - 8) * Lanes, null, v + (n - 8) * kStride, lines); // the last 8 keys again
            return;
        }
        for (; j < n; j++)
        {
            float* kj = k + j * kStride;
            Vector512<float> a = Vector512<float>.Zero;
            for (int d = 0; d < headDim; d++)
                a = Vector512.FusedMultiplyAdd(Vector512.Load(qt + d * Lanes), Vector512.ConditionalSelect(upper, Vector512.Create(kj[d + second]), Vector512.Create(kj[d])), a);
            (a * vs).Store(st + j * Lanes);
        }
    }

    /// <summary>8 keys of <see cref="ScoresPair"/>. The d loop goes in 8 parts; before part r it prefetches row r of the
    /// 8 key rows at <paramref name="kAhead"/> (null: none) and of the 8 value rows at <paramref name="vHere"/>, as many lines
    /// as given.</summary>
    private static void PairBlock8(float* q, float* k, long ks, long second, int headDim, Vector512<float> vs, Vector512<float> upper, float* s,
        float* kAhead, float* vHere, int lines)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        float* k2 = k + second;
        bool prefetch = Sse.IsSupported;
        int d = 0;
        for (int part = 0; part < 8; part++)
        {
            if (prefetch)
            {
                float* kr = kAhead + part * ks, vr = vHere + part * ks;
                for (int l = 0; l < lines; l++)
                {
                    if (kAhead != null) Sse.Prefetch0(kr + l * 16);
                    Sse.Prefetch0(vr + l * 16);
                }
            }
            for (int dEnd = part == 7 ? headDim : (part + 1) * headDim / 8; d < dEnd; d++)
            {
                var x = Vector512.Load(q + d * Lanes);
                float* kd = k + d, ld = k2 + d;
                a0 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[0]), Vector512.Create(kd[0])), a0);
                a1 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[ks]), Vector512.Create(kd[ks])), a1);
                a2 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[2 * ks]), Vector512.Create(kd[2 * ks])), a2);
                a3 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[3 * ks]), Vector512.Create(kd[3 * ks])), a3);
                a4 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[4 * ks]), Vector512.Create(kd[4 * ks])), a4);
                a5 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[5 * ks]), Vector512.Create(kd[5 * ks])), a5);
                a6 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[6 * ks]), Vector512.Create(kd[6 * ks])), a6);
                a7 = Vector512.FusedMultiplyAdd(x, Vector512.ConditionalSelect(upper, Vector512.Create(ld[7 * ks]), Vector512.Create(kd[7 * ks])), a7);
            }
        }
        (a0 * vs).Store(s);
        (a1 * vs).Store(s + Lanes);
        (a2 * vs).Store(s + 2 * Lanes);
        (a3 * vs).Store(s + 3 * Lanes);
        (a4 * vs).Store(s + 4 * Lanes);
        (a5 * vs).Store(s + 5 * Lanes);
        (a6 * vs).Store(s + 6 * Lanes);
        (a7 * vs).Store(s + 7 * Lanes);
    }

    /// <summary><see cref="Block1x8"/> with the prefetches of <see cref="PairBlock8"/> (one head's lines per row).</summary>
    private static void Block1x8Prefetch<TS, TV>(float* q, float* k, long ks, int headDim, TV vs, float* s, float* kAhead, float* vHere, int lines)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        TV a0 = TS.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        int d = 0;
        for (int part = 0; part < 8; part++)
        {
            float* kr = kAhead + part * ks, vr = vHere + part * ks;
            for (int l = 0; l < lines; l++)
            {
                if (kAhead != null) Sse.Prefetch0(kr + l * 16);
                Sse.Prefetch0(vr + l * 16);
            }
            for (int dEnd = part == 7 ? headDim : (part + 1) * headDim / 8; d < dEnd; d++)
            {
                TV x = TS.Load(q + d * Lanes);
                float* kd = k + d;
                a0 = TS.Fma(x, TS.Broadcast(kd[0]), a0);
                a1 = TS.Fma(x, TS.Broadcast(kd[ks]), a1);
                a2 = TS.Fma(x, TS.Broadcast(kd[2 * ks]), a2);
                a3 = TS.Fma(x, TS.Broadcast(kd[3 * ks]), a3);
                a4 = TS.Fma(x, TS.Broadcast(kd[4 * ks]), a4);
                a5 = TS.Fma(x, TS.Broadcast(kd[5 * ks]), a5);
                a6 = TS.Fma(x, TS.Broadcast(kd[6 * ks]), a6);
                a7 = TS.Fma(x, TS.Broadcast(kd[7 * ks]), a7);
            }
        }
        TS.Store(TS.Mul(a0, vs), s);
        TS.Store(TS.Mul(a1, vs), s + Lanes);
        TS.Store(TS.Mul(a2, vs), s + 2 * Lanes);
        TS.Store(TS.Mul(a3, vs), s + 3 * Lanes);
        TS.Store(TS.Mul(a4, vs), s + 4 * Lanes);
        TS.Store(TS.Mul(a5, vs), s + 5 * Lanes);
        TS.Store(TS.Mul(a6, vs), s + 6 * Lanes);
        TS.Store(TS.Mul(a7, vs), s + 7 * Lanes);
    }

    /// <summary>st[j][lane] = cap · tanh(st[j][lane] / cap) for keys [0, n) and lanes [0, chunks · TS.Count) (Gemma 2).</summary>
    public static void Softcap<TS, TV>(float* st, int n, int chunks, float cap)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        TV c = TS.Broadcast(cap), ic = TS.Broadcast(1f / cap);
        for (int j = 0; j < n; j++)
        {
            float* p = st + (long)j * Lanes;
            for (int l = 0; l < chunks; l++) TS.Store(SimdTanh.Softcap<TS, TV>(TS.Load(p + l * w), c, ic), p + l * w);
        }
    }

    /// <summary>
    /// Per lane (row) over keys [0, n): max, st[j] = exp(st[j] − max), inv = 1 / Σ_j st[j] (j ascending).
    /// Masked keys hold −∞ and become exactly 0.
    /// </summary>
    public static void Softmax<TS, TV>(float* st, int n, int chunks, float* inv)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        for (int c = 0; c < chunks; c++)
        {
            float* p = st + c * w;
            TV m = TS.Load(p);
            for (int j = 1; j < n; j++) m = TS.Max(m, TS.Load(p + j * Lanes));
            TV sum = TS.Zero;
            for (int j = 0; j < n; j++)
            {
                TV e = TS.Exp(TS.Sub(TS.Load(p + j * Lanes), m));
                TS.Store(e, p + j * Lanes);
                sum = TS.Add(sum, e);
            }
            TS.Store(TS.Div(TS.Broadcast(1f), sum), inv + c * w);
        }
    }

    /// <summary>
    /// o_r[d] = inv[lane0 + r] · Σ_{j &lt; n} st[j][lane0 + r] · v_j[d] for the 4 rows r = 0..3 (j ascending, fused).
    /// </summary>
    public static void Values<TS, TV>(float* st, int lane0, float* v, long vStride, int headDim, int n, float* inv,
        float* o0, float* o1, float* o2, float* o3)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        float* e = st + lane0;
        TV i0 = TS.Broadcast(inv[lane0]), i1 = TS.Broadcast(inv[lane0 + 1]), i2 = TS.Broadcast(inv[lane0 + 2]), i3 = TS.Broadcast(inv[lane0 + 3]);
        int d = 0;
        for (; d + 4 * w <= headDim; d += 4 * w)
        {
            TV a00 = TS.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            TV a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            for (int j = 0; j < n; j++)
            {
                float* vj = v + j * vStride + d;
                TV v0 = TS.Load(vj), v1 = TS.Load(vj + w), v2 = TS.Load(vj + 2 * w), v3 = TS.Load(vj + 3 * w);
                float* ej = e + j * Lanes;
                TV b = TS.Broadcast(ej[0]);
                a00 = TS.Fma(v0, b, a00); a01 = TS.Fma(v1, b, a01); a02 = TS.Fma(v2, b, a02); a03 = TS.Fma(v3, b, a03);
                b = TS.Broadcast(ej[1]);
                a10 = TS.Fma(v0, b, a10); a11 = TS.Fma(v1, b, a11); a12 = TS.Fma(v2, b, a12); a13 = TS.Fma(v3, b, a13);
                b = TS.Broadcast(ej[2]);
                a20 = TS.Fma(v0, b, a20); a21 = TS.Fma(v1, b, a21); a22 = TS.Fma(v2, b, a22); a23 = TS.Fma(v3, b, a23);
                b = TS.Broadcast(ej[3]);
                a30 = TS.Fma(v0, b, a30); a31 = TS.Fma(v1, b, a31); a32 = TS.Fma(v2, b, a32); a33 = TS.Fma(v3, b, a33);
            }
            TS.Store(TS.Mul(a00, i0), o0 + d); TS.Store(TS.Mul(a01, i0), o0 + d + w); TS.Store(TS.Mul(a02, i0), o0 + d + 2 * w); TS.Store(TS.Mul(a03, i0), o0 + d + 3 * w);
            TS.Store(TS.Mul(a10, i1), o1 + d); TS.Store(TS.Mul(a11, i1), o1 + d + w); TS.Store(TS.Mul(a12, i1), o1 + d + 2 * w); TS.Store(TS.Mul(a13, i1), o1 + d + 3 * w);
            TS.Store(TS.Mul(a20, i2), o2 + d); TS.Store(TS.Mul(a21, i2), o2 + d + w); TS.Store(TS.Mul(a22, i2), o2 + d + 2 * w); TS.Store(TS.Mul(a23, i2), o2 + d + 3 * w);
            TS.Store(TS.Mul(a30, i3), o3 + d); TS.Store(TS.Mul(a31, i3), o3 + d + w); TS.Store(TS.Mul(a32, i3), o3 + d + 2 * w); TS.Store(TS.Mul(a33, i3), o3 + d + 3 * w);
        }
        for (; d + 2 * w <= headDim; d += 2 * w)
        {
            TV a00 = TS.Zero, a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int j = 0; j < n; j++)
            {
                float* vj = v + j * vStride + d;
                TV v0 = TS.Load(vj), v1 = TS.Load(vj + w);
                float* ej = e + j * Lanes;
                TV b = TS.Broadcast(ej[0]); a00 = TS.Fma(v0, b, a00); a01 = TS.Fma(v1, b, a01);
                b = TS.Broadcast(ej[1]); a10 = TS.Fma(v0, b, a10); a11 = TS.Fma(v1, b, a11);
                b = TS.Broadcast(ej[2]); a20 = TS.Fma(v0, b, a20); a21 = TS.Fma(v1, b, a21);
                b = TS.Broadcast(ej[3]); a30 = TS.Fma(v0, b, a30); a31 = TS.Fma(v1, b, a31);
            }
            TS.Store(TS.Mul(a00, i0), o0 + d); TS.Store(TS.Mul(a01, i0), o0 + d + w);
            TS.Store(TS.Mul(a10, i1), o1 + d); TS.Store(TS.Mul(a11, i1), o1 + d + w);
            TS.Store(TS.Mul(a20, i2), o2 + d); TS.Store(TS.Mul(a21, i2), o2 + d + w);
            TS.Store(TS.Mul(a30, i3), o3 + d); TS.Store(TS.Mul(a31, i3), o3 + d + w);
        }
        for (; d + w <= headDim; d += w)
        {
            TV a0 = TS.Zero, a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < n; j++)
            {
                TV v0 = TS.Load(v + j * vStride + d);
                float* ej = e + j * Lanes;
                a0 = TS.Fma(v0, TS.Broadcast(ej[0]), a0);
                a1 = TS.Fma(v0, TS.Broadcast(ej[1]), a1);
                a2 = TS.Fma(v0, TS.Broadcast(ej[2]), a2);
                a3 = TS.Fma(v0, TS.Broadcast(ej[3]), a3);
            }
            TS.Store(TS.Mul(a0, i0), o0 + d);
            TS.Store(TS.Mul(a1, i1), o1 + d);
            TS.Store(TS.Mul(a2, i2), o2 + d);
            TS.Store(TS.Mul(a3, i3), o3 + d);
        }
        for (; d < headDim; d++)
        {
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int j = 0; j < n; j++)
            {
                float vd = v[j * vStride + d];
                float* ej = e + j * Lanes;
                a0 = MathF.FusedMultiplyAdd(vd, ej[0], a0);
                a1 = MathF.FusedMultiplyAdd(vd, ej[1], a1);
                a2 = MathF.FusedMultiplyAdd(vd, ej[2], a2);
                a3 = MathF.FusedMultiplyAdd(vd, ej[3], a3);
            }
            o0[d] = a0 * inv[lane0];
            o1[d] = a1 * inv[lane0 + 1];
            o2[d] = a2 * inv[lane0 + 2];
            o3[d] = a3 * inv[lane0 + 3];
        }
    }

    /// <summary>
    /// a_r[d] += Σ_{j &lt; n} st[j][lane0 + r] · v_j[d] for the 4 rows r = 0..3 (j ascending, fused, the sums loaded
    /// from and stored back to a0..a3): <see cref="Values"/> over keys taken a chunk at a time, each element through
    /// the same fused sequence, the 1/sum applied by the caller at the end.
    /// </summary>
    public static void ValuesAccumulate<TS, TV>(float* st, int lane0, float* v, long vStride, int headDim, int n,
        float* a0, float* a1, float* a2, float* a3)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int w = TS.Count;
        float* e = st + lane0;
        int d = 0;
        for (; d + w <= headDim; d += w)
        {
            TV s0 = TS.Load(a0 + d), s1 = TS.Load(a1 + d), s2 = TS.Load(a2 + d), s3 = TS.Load(a3 + d);
            for (int j = 0; j < n; j++)
            {
                TV v0 = TS.Load(v + j * vStride + d);
                float* ej = e + j * Lanes;
                s0 = TS.Fma(v0, TS.Broadcast(ej[0]), s0);
                s1 = TS.Fma(v0, TS.Broadcast(ej[1]), s1);
                s2 = TS.Fma(v0, TS.Broadcast(ej[2]), s2);
                s3 = TS.Fma(v0, TS.Broadcast(ej[3]), s3);
            }
            TS.Store(s0, a0 + d);
            TS.Store(s1, a1 + d);
            TS.Store(s2, a2 + d);
            TS.Store(s3, a3 + d);
        }
        for (; d < headDim; d++)
        {
            float s0 = a0[d], s1 = a1[d], s2 = a2[d], s3 = a3[d];
            for (int j = 0; j < n; j++)
            {
                float vd = v[j * vStride + d];
                float* ej = e + j * Lanes;
                s0 = MathF.FusedMultiplyAdd(vd, ej[0], s0);
                s1 = MathF.FusedMultiplyAdd(vd, ej[1], s1);
                s2 = MathF.FusedMultiplyAdd(vd, ej[2], s2);
                s3 = MathF.FusedMultiplyAdd(vd, ej[3], s3);
            }
            a0[d] = s0;
            a1[d] = s1;
            a2[d] = s2;
            a3[d] = s3;
        }
    }
}
