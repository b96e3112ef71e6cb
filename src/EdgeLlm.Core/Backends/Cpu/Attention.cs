using EdgeLlm.Backends.Cpu.Kernels;
using System.Runtime.Intrinsics;
using EdgeLlm.Compute;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// Causal grouped-query attention over the KV cache, computed in tiles: the query rows of one KV head (token t,
/// group member g, in that order: row = t · group + g) are cut into tiles of <see cref="AttentionTile.Lanes"/>
/// rows, and one work unit is one (tile, KV head), or at 16 lanes two KV heads of a tile of at most 8 rows, such as a
/// decode token's GQA group (<see cref="PairUnit"/>). A unit transposes its queries, computes the tile's scores
/// (scale · q·k, then softcapped when the options ask) against keys j0..startPos + (its last token) as a matrix
/// product, masks the keys each row may not see (token t sits at position i = startPos + t and sees j ≤ i, and with
/// a sliding window W only i − j &lt; W; the batch's own K/V were stored first; j0 is the first key the tile's first
/// row sees), takes the softmax per row and multiplies by V (see <see cref="AttentionTile"/>). Units are dealt to threads as
/// contiguous runs of about equal cost (later tiles see more keys). Each output element is computed by one thread
/// through a fixed sequence of operations that does not depend on the tile it shares, so results do not depend on
/// the thread count nor on how a sequence was split into batches.
/// A cache stored as f16 or q8_0 is read <see cref="Chunk"/> keys at a time: the unit converts the chunk's K (then V)
/// head slices to float32 in its scratch (<see cref="KvRows.Read"/>, vectorized) and runs the same tile kernels on
/// them, the value sums kept in scratch between chunks; every output element sees the same sequence of operations
/// as with a float32 cache holding the dequantized values, so it equals that result exactly.
/// </summary>
internal sealed unsafe partial class Attention : ParallelWork, ITokenStep
{
    private const int Lanes = AttentionTile.Lanes;

    /// <summary>Keys converted at a time from an f16 or q8_0 cache.</summary>
    public const int Chunk = 128;
    private readonly float*[] _scratch; // per thread, ScratchFloats long
    private readonly int _maxHeadDim;
    private readonly int _contextSize;

    /// <summary>
    /// One query batch against one KV cache: query rows at <see cref="Q"/>, cache rows at <see cref="K"/> / <see cref="V"/>
    /// (stored as the given types, kRow / vRow bytes apart), output rows at <see cref="Dst"/>, tokens at positions
    /// StartPos, StartPos + 1, ... A call runs one segment (a sequence alone) or several (the sequences of a server step).
    /// </summary>
    internal struct Segment
    {
        public float* Q, Dst;
        public byte* K, V;
        public KvCacheType KType, VType;
        public long KRow, VRow;
        public int StartPos, NTokens;
        /// <summary>
        /// Rows of the RoPE tables (<see cref="Rope.Cos"/>, <see cref="Rope.Sin"/>) of the segment's first token, when the
        /// queries are still unrotated: the unit rotates each query row as it transposes it (<see cref="Rope.Rotate"/>: the
        /// bits a rotation of q in place gives) and leaves Q as it was. Null: Q is already rotated.
        /// </summary>
        public float* Cos, Sin;
    }

    private Segment[] _segs = new Segment[1];
    private int _segCount;
    private int _nHeads;
    private int _headDim;
    private int _group;
    private int _kvDim;
    private int _nKv;
    private float _scale;
    private float _softcap;
    private int _window;
    private int _ropeHalf;
    private bool _ropeNeox;
    private int _width; // the vector width of the call set up by Bind

    /// <summary>
    /// Calls whose total cost (<see cref="UnitCost"/>: rows times keys) is at most this run on the calling thread alone: a
    /// decode step's attention over a short context takes a few microseconds, about what waking the workers and waiting
    /// for them costs (they keep spinning for the next product meanwhile).
    /// </summary>
    public const long SerialCost = 4096;

    /// <summary>Vector width to run (16, 8, 4 or 1 floats); 0 = the widest the hardware accelerates. Tests set it.</summary>
    internal int Width { get; set; }

    /// <summary>
    /// Floats of per-thread scratch: transposed queries, the score tile, row limits, 1/sum, a dummy output row, then
    /// (for converted caches) a chunk of converted rows and the tile's value sums.
    /// </summary>
    public static long ScratchFloats(int contextSize, int headDim) =>
        (long)headDim * Lanes + (long)contextSize * Lanes + Lanes + Lanes + RoundUp(headDim, 16)
        + (long)Chunk * headDim + (long)Lanes * headDim;

    public Attention(float*[] scratch, int contextSize, int maxHeadDim)
    {
        _scratch = scratch;
        _contextSize = contextSize;
        _maxHeadDim = maxHeadDim;
    }

    public void Run(WorkerPool pool, float* q, float* k, float* v, float* dst, int startPos, int nTokens, int nHeads, int headDim, int kvDim,
        float scale, float softcap, int window)
        => Run(pool, q, (byte*)k, KvCacheType.F32, 4L * kvDim, (byte*)v, KvCacheType.F32, 4L * kvDim, dst, startPos, nTokens, nHeads, headDim, kvDim,
            scale, softcap, window);

    /// <summary>Attention over K and V rows stored as the given types, kRow / vRow bytes apart.</summary>
    public void Run(WorkerPool pool, float* q, byte* k, KvCacheType kType, long kRow, byte* v, KvCacheType vType, long vRow, float* dst,
        int startPos, int nTokens, int nHeads, int headDim, int kvDim, float scale, float softcap, int window)
    {
        ref var sg = ref Segments(1)[0];
        sg.Q = q;
        sg.K = k;
        sg.V = v;
        sg.KType = kType;
        sg.VType = vType;
        sg.KRow = kRow;
        sg.VRow = vRow;
        sg.Dst = dst;
        sg.StartPos = startPos;
        sg.NTokens = nTokens;
        sg.Cos = sg.Sin = null;
        RunSegments(pool, 1, nHeads, headDim, kvDim, scale, softcap, window);
    }

    /// <summary>Room for <paramref name="count"/> segments for <see cref="RunSegments"/> to read (grown, never shrunk: allocates only when a call has more sequences than any before).</summary>
    public Span<Segment> Segments(int count)
    {
        if (_segs.Length < count) _segs = new Segment[count];
        return _segs.AsSpan(0, count);
    }

    /// <summary>
    /// The first <paramref name="count"/> segments filled in through <see cref="Segments"/>, in one dispatch: the units of
    /// all of them dealt to the threads by cost together. Each output element is computed exactly as when its
    /// segment runs alone.
    /// </summary>
    /// <paramref name="ropeDims"/> and <paramref name="neox"/>: the rotation of segments whose queries are unrotated (<see cref="Segment.Cos"/>).
    public void RunSegments(WorkerPool pool, int count, int nHeads, int headDim, int kvDim, float scale, float softcap, int window,
        int ropeDims = 0, bool neox = false)
    {
        if (Bind(count, nHeads, headDim, kvDim, scale, softcap, window, ropeDims, neox)) Execute(0, 1);
        else pool.Run(this);
    }

    /// <summary>
    /// Sets up a call over the first <paramref name="count"/> segments (as <see cref="RunSegments"/>) without running it:
    /// <see cref="RunSegment"/> then runs a segment's units on a given thread. True when the call is small enough for the
    /// calling thread alone (<see cref="SerialCost"/>).
    /// </summary>
    public bool Bind(int count, int nHeads, int headDim, int kvDim, float scale, float softcap, int window, int ropeDims = 0, bool neox = false)
    {
        if (headDim > _maxHeadDim) throw new ArgumentOutOfRangeException(nameof(headDim), $"attention head size {headDim} exceeds the prepared {_maxHeadDim}");
        if (window < 0) throw new ArgumentOutOfRangeException(nameof(window), $"attention window {window} is negative");
        if (!float.IsFinite(scale) || !(softcap >= 0) || !float.IsFinite(softcap)) throw new ArgumentOutOfRangeException(nameof(scale), $"attention scale {scale} / softcap {softcap} is not usable");
        if (count < 1 || count > _segs.Length) throw new ArgumentOutOfRangeException(nameof(count), $"{count} attention segments, {_segs.Length} prepared");
        _segCount = count;
        _scale = scale;
        _softcap = softcap;
        _window = window;
        _nHeads = nHeads;
        _headDim = headDim;
        _kvDim = kvDim;
        _nKv = kvDim / headDim;
        _group = nHeads / _nKv;
        _ropeHalf = ropeDims / 2;
        _ropeNeox = neox;
        _width = Width != 0 ? Width
            : Vector512.IsHardwareAccelerated ? 16
            : Vector256.IsHardwareAccelerated ? 8
            : Vector128.IsHardwareAccelerated ? 4 : 1;
        for (int i = 0; i < count; i++)
            if (_segs[i].Cos != null && (ropeDims < 2 || ropeDims > headDim))
                throw new ArgumentOutOfRangeException(nameof(ropeDims), $"attention segment {i} asks for a rotation of {ropeDims} of {headDim} dims");
        long total = 0;
        for (int i = 0; i < count && total <= SerialCost; i++)
        {
            int rowsPerKv = _segs[i].NTokens * _group, tiles = (rowsPerKv + Lanes - 1) / Lanes;
            for (int tile = 0; tile < tiles; tile++) total += UnitCost(_segs[i].StartPos, tile, rowsPerKv) * _nKv;
        }
        return total <= SerialCost;
    }

    /// <summary>
    /// Every unit of segment <paramref name="s"/> of the call set up by <see cref="Bind"/>, on <paramref name="thread"/>'s
    /// scratch: the same outputs as the dispatch (a unit's output does not depend on the thread that runs it). A product
    /// whose input is the attention output runs this for a decode step's sequence on the thread that quantizes its token
    /// (<see cref="MatMul.SetStep"/>).
    /// </summary>
    public void RunSegment(int thread, int s)
    {
        ref readonly Segment sg = ref _segs[s];
        int rowsPerKv = sg.NTokens * _group, tiles = (rowsPerKv + Lanes - 1) / Lanes;
        if (Paired(in sg))
        {
            for (int kvHead = 0; kvHead < _nKv; kvHead += 2)
                if (kvHead + 1 < _nKv) PairUnit(thread, in sg, kvHead);
                else RunUnit(thread, in sg, kvHead, 0, rowsPerKv);
            return;
        }
        for (int tile = 0; tile < tiles; tile++)
            for (int kvHead = 0; kvHead < _nKv; kvHead++)
            {
                int r0 = tile * Lanes, r1 = Math.Min(rowsPerKv, r0 + Lanes);
                RunUnit(thread, in sg, kvHead, r0, r1);
            }
    }

    /// <summary>A decode step's sequence t (one token each) for the Wo product's token step.</summary>
    void ITokenStep.Prepare(int thread, long t) => RunSegment(thread, (int)t);

    private void RunUnit(int thread, in Segment sg, int kvHead, int r0, int r1)
    {
        switch (_width)
        {
            case 16: Unit<SimdF512, Vector512<float>>(thread, in sg, kvHead, r0, r1); break;
            case 8: Unit<SimdF256, Vector256<float>>(thread, in sg, kvHead, r0, r1); break;
            case 4: Unit<SimdF128, Vector128<float>>(thread, in sg, kvHead, r0, r1); break;
            default: Unit<SimdF1, float>(thread, in sg, kvHead, r0, r1); break;
        }
    }

    public override void Execute(int thread, int threadCount)
    {
        int width = _width;
        long total = 0;
        for (int s = 0; s < _segCount; s++)
        {
            int rowsPerKv = _segs[s].NTokens * _group, tiles = (rowsPerKv + Lanes - 1) / Lanes;
            for (int tile = 0; tile < tiles; tile++) total += UnitCost(_segs[s].StartPos, tile, rowsPerKv) * _nKv;
        }

        // Unit u = tile · nKv + kvHead of each segment in turn goes to the thread whose equal share of the total cost
        // holds its midpoint (a paired segment's unit u: KV heads 2u and 2u + 1, at twice a head's cost).
        long before = 0;
        for (int s = 0; s < _segCount; s++)
        {
            ref readonly Segment sg = ref _segs[s];
            int rowsPerKv = sg.NTokens * _group, tiles = (rowsPerKv + Lanes - 1) / Lanes;
            if (Paired(in sg))
            {
                long head = UnitCost(sg.StartPos, 0, rowsPerKv);
                for (int kvHead = 0; kvHead < _nKv; kvHead += 2)
                {
                    bool pair = kvHead + 1 < _nKv;
                    long cost = pair ? 2 * head : head;
                    long owner = threadCount == 1 ? 0 : Math.Min(threadCount - 1, (2 * before + cost) * threadCount / (2 * total));
                    before += cost;
                    if (owner != thread) continue;
                    if (pair) PairUnit(thread, in sg, kvHead);
                    else RunUnit(thread, in sg, kvHead, 0, rowsPerKv);
                }
                continue;
            }
            long units = (long)tiles * _nKv;
            for (long u = 0; u < units; u++)
            {
                int tile = (int)(u / _nKv);
                long cost = UnitCost(sg.StartPos, tile, rowsPerKv);
                long owner = threadCount == 1 ? 0 : Math.Min(threadCount - 1, (2 * before + cost) * threadCount / (2 * total));
                before += cost;
                if (owner != thread) continue;
                int kvHead = (int)(u % _nKv);
                int r0 = tile * Lanes, r1 = Math.Min(rowsPerKv, r0 + Lanes);
                switch (width)
                {
                    case 16: Unit<SimdF512, Vector512<float>>(thread, in sg, kvHead, r0, r1); break;
                    case 8: Unit<SimdF256, Vector256<float>>(thread, in sg, kvHead, r0, r1); break;
                    case 4: Unit<SimdF128, Vector128<float>>(thread, in sg, kvHead, r0, r1); break;
                    default: Unit<SimdF1, float>(thread, in sg, kvHead, r0, r1); break;
                }
            }
        }
    }

    /// <summary>Relative cost of a tile: its rows times the keys they read (plus a fixed part for transposing).</summary>
    private long UnitCost(int startPos, int tile, int rowsPerKv)
    {
        int r0 = tile * Lanes, r1 = Math.Min(rowsPerKv, r0 + Lanes);
        long keys = startPos + (r1 - 1) / _group + 1 - FirstKey(startPos + r0 / _group);
        return (r1 - r0) * (keys + 16);
    }

    /// <summary>The first key position a query at position <paramref name="pos"/> sees (0 without a window).</summary>
    private int FirstKey(int pos) => _window == 0 ? 0 : Math.Max(0, pos - _window + 1);

    private void Unit<TS, TV>(int thread, in Segment sg, int kvHead, int r0, int r1)
        where TS : struct, ISimdFloat<TV> where TV : struct
    {
        int startPos = sg.StartPos;
        float* q = sg.Q, dstBase = sg.Dst;
        byte* kb = sg.K, vb = sg.V;
        KvCacheType kType = sg.KType, vType = sg.VType;
        long kRow = sg.KRow, vRow = sg.VRow;
        int headDim = _headDim, group = _group, rows = r1 - r0;
        float* qt = _scratch[thread];
        float* st = qt + (long)_maxHeadDim * Lanes;
        int* limit = (int*)(st + (long)_contextSize * Lanes);
        float* inv = (float*)(limit + Lanes);
        int keys = startPos + (r1 - 1) / group + 1;
        int j0 = FirstKey(startPos + r0 / group); // keys before j0 are hidden from every row of the tile
        int n = keys - j0;
        float* dummy = inv + Lanes;
        long qDim = (long)_nHeads * headDim;
        long kvOff = (long)kvHead * headDim;

        int w = TS.Count;
        int rows4 = (rows + 3) & ~3;
        int chunks = (rows4 + w - 1) / w;

        // Transpose the tile's queries into qt[d][lane]; lanes past the tile up to the last vector the kernels read
        // (chunks · w) are zero and see every key; lanes beyond it are never read, so they are not written (a decode
        // tile, one GQA group of 8 rows at width 16, touches one cache line of each qt row instead of two).
        // A tile of one token (a decode step's) holds consecutive heads: moved by blocks and rotated across lanes below.
        int readLanes = chunks * w;
        bool oneToken = sg.NTokens == 1;
        if (oneToken) AttentionTile.TransposeRows(q + (long)(kvHead * group + r0) * headDim, headDim, rows, headDim, qt, 0);
        for (int r = 0; r < rows; r++)
        {
            int row = r0 + r, t = row / group;
            limit[r] = startPos + t;
            if (oneToken) continue;
            int h = kvHead * group + row % group;
            float* src = q + t * qDim + (long)h * headDim;
            if (sg.Cos != null) Rope.Rotate(src, sg.Cos + (long)t * _ropeHalf, sg.Sin + (long)t * _ropeHalf, _ropeHalf, headDim, _ropeNeox, qt + r, Lanes);
            else for (int d = 0; d < headDim; d++) qt[d * Lanes + r] = src[d];
        }
        if (rows < readLanes)
        {
            for (int r = rows; r < readLanes; r++) limit[r] = keys - 1;
            int z4 = rows4; // lanes from rows4 on come in whole groups of 4 (readLanes is a multiple of 4 when w >= 4, else rows4)
            for (int d = 0; d < headDim; d++)
            {
                float* line = qt + d * Lanes;
                for (int r = rows; r < z4; r++) line[r] = 0f;
                for (int r = z4; r < readLanes; r += 4) Vector128<float>.Zero.Store(line + r);
            }
        }
        if (oneToken && sg.Cos != null) AttentionTile.RotateLanes<TS, TV>(qt, chunks, sg.Cos, sg.Sin, _ropeHalf, _ropeNeox);
        // Score row s of st is key j0 + s.
        float* conv = dummy + RoundUp(_maxHeadDim, 16); // Chunk rows of converted K or V
        float* acc = conv + (long)Chunk * _maxHeadDim;   // value sums of the tile's rows, [row][d]
        if (kType == KvCacheType.F32)
            AttentionTile.Scores<TS, TV>(qt, (float*)kb + kvOff + (long)j0 * _kvDim, _kvDim, headDim, n, chunks, _scale, st,
                vType == KvCacheType.F32 && sg.NTokens == 1 ? (float*)vb + kvOff + (long)j0 * _kvDim : null);
        else
            for (int c0 = 0; c0 < n; c0 += Chunk)
            {
                int cn = Math.Min(Chunk, n - c0);
                KvRows.Read(kType, kb + (j0 + c0) * kRow, kRow, (int)kvOff, headDim, cn, conv, w);
                AttentionTile.Scores<TS, TV>(qt, conv, headDim, headDim, cn, chunks, _scale, st + (long)c0 * Lanes);
            }
        if (_softcap > 0) AttentionTile.Softcap<TS, TV>(st, n, chunks, _softcap);
        for (int r = 0; r < rows; r++)
        {
            for (int j = limit[r] + 1; j < keys; j++) st[(long)(j - j0) * Lanes + r] = float.NegativeInfinity;
            if (_window != 0)
                for (int j = j0, lo = FirstKey(limit[r]); j < lo; j++) st[(long)(j - j0) * Lanes + r] = float.NegativeInfinity;
        }
        AttentionTile.Softmax<TS, TV>(st, n, chunks, inv);

        if (vType == KvCacheType.F32)
        {
            float* v = (float*)vb + kvOff + (long)j0 * _kvDim;
            for (int r = 0; r < rows; r += 4)
            {
                float* o0 = Out(dstBase, r0 + r, kvHead), o1 = r + 1 < rows ? Out(dstBase, r0 + r + 1, kvHead) : dummy;
                float* o2 = r + 2 < rows ? Out(dstBase, r0 + r + 2, kvHead) : dummy, o3 = r + 3 < rows ? Out(dstBase, r0 + r + 3, kvHead) : dummy;
                int nv = limit[Math.Min(rows, r + 4) - 1] + 1 - j0;
                AttentionTile.Values<TS, TV>(st, r, v, _kvDim, headDim, nv, inv, o0, o1, o2, o3);
            }
            return;
        }

        new Span<float>(acc, rows4 * headDim).Clear();
        int nAll = limit[rows - 1] + 1 - j0; // the keys the tile's last row sees
        for (int c0 = 0; c0 < nAll; c0 += Chunk)
        {
            int cn = Math.Min(Chunk, nAll - c0);
            KvRows.Read(vType, vb + (j0 + c0) * vRow, vRow, (int)kvOff, headDim, cn, conv, w);
            for (int r = 0; r < rows; r += 4)
            {
                int nv = Math.Min(limit[Math.Min(rows, r + 4) - 1] + 1 - j0, c0 + cn) - c0;
                if (nv <= 0) continue;
                float* a = acc + (long)r * headDim;
                AttentionTile.ValuesAccumulate<TS, TV>(st + (long)c0 * Lanes, r, conv, headDim, headDim, nv, a, a + headDim, a + 2 * headDim, a + 3 * headDim);
            }
        }
        for (int r = 0; r < rows; r++)
        {
            float* o = Out(dstBase, r0 + r, kvHead), a = acc + (long)r * headDim;
            float s = inv[r];
            for (int d = 0; d < headDim; d++) o[d] = a[d] * s;
        }
    }

    private float* Out(float* dst, int row, int kvHead)
    {
        int t = row / _group, h = kvHead * _group + row % _group;
        return dst + (long)t * _nHeads * _headDim + (long)h * _headDim;
    }

    private static long RoundUp(long x, int m) => (x + m - 1) / m * m;
}
