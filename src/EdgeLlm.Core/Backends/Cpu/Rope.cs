using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// Rotary position embedding: in each head, pair i (i &lt; dims/2) rotates by theta_i(pos), the pair being
/// (x[2i], x[2i+1]) in llama.cpp's "normal" layout and (x[i], x[i + dims/2]) in the NEOX layout; elements past
/// dims pass through. cos/sin (times the spec's attention factor) are computed in double once per
/// (spec, startPos, nTokens) into a table shared by Q and K of every layer of that kind; two tables are kept, so a
/// model with local and global layers (Gemma 3) does not recompute them at every switch. Threads then split the
/// (token, head) rows. <see cref="Attention"/> reads the same tables to rotate q as it transposes it (<see cref="Rotate"/>).
/// </summary>
internal sealed unsafe class Rope : ParallelWork
{
    public const int Tables = 2;

    private readonly float*[] _cosTables;
    private readonly float*[] _sinTables;
    private readonly int _capacity; // floats in each table
    private readonly RopeSpec?[] _tableSpec = new RopeSpec?[Tables];
    private readonly int[] _tableStart = [-1, -1];
    private readonly int[] _tableCount = new int[Tables];
    // Whether a table was made by RunPositions, and then the position of each of its rows (arrays kept once allocated).
    private readonly bool[] _tablePositional = new bool[Tables];
    private readonly int[]?[] _tablePositions = new int[]?[Tables];
    private int _lastFilled;

    private float* _cos;
    private float* _sin;

    private float* _x;
    private int _nTokens;
    private int _nHeads;
    private int _headDim;
    private int _half;
    private bool _neox;

    /// <param name="cos">Tables (<see cref="Tables"/>) cos tables of capacity floats each, and as many sin tables.</param>
    public Rope(float*[] cos, float*[] sin, int capacity)
    {
        if (cos.Length != Tables || sin.Length != Tables) throw new ArgumentException($"rope needs {Tables} cos and sin tables");
        _cosTables = cos;
        _sinTables = sin;
        _capacity = capacity;
    }

    public void Run(WorkerPool pool, float* x, int nTokens, int nHeads, int startPos, RopeSpec spec)
        => Apply(pool, Table(nTokens, startPos, spec), x, nTokens, nHeads, spec);

    /// <summary>cos (times the attention factor) of table <paramref name="slot"/>: row t holds token t's Dims / 2 values.</summary>
    public float* Cos(int slot) => _cosTables[slot];

    /// <summary>sin (times the attention factor) of table <paramref name="slot"/>, rows as <see cref="Cos"/>.</summary>
    public float* Sin(int slot) => _sinTables[slot];

    /// <summary>
    /// The table of tokens at positions startPos.. (made, or kept from an earlier call with the same spec and positions):
    /// its slot for <see cref="Cos"/> and <see cref="Sin"/>, valid until a table for other positions is made.
    /// </summary>
    public int Table(int nTokens, int startPos, RopeSpec spec)
    {
        int half = spec.Dims / 2;
        if ((long)nTokens * half > _capacity) throw new ArgumentException($"rope for {nTokens} tokens exceeds the table prepared for the batch size");
        int slot = -1;
        for (int k = 0; k < Tables; k++)
            if (ReferenceEquals(spec, _tableSpec[k]) && !_tablePositional[k] && startPos == _tableStart[k] && nTokens <= _tableCount[k]) slot = k;
        if (slot < 0)
        {
            slot = 1 - _lastFilled; // replace the table filled longer ago
            _lastFilled = slot;
            _cos = _cosTables[slot];
            _sin = _sinTables[slot];
            for (int t = 0; t < nTokens; t++)
            {
                for (int i = 0; i < half; i++)
                {
                    double theta = spec.Theta(startPos + t, i);
                    _cos[t * half + i] = (float)(Math.Cos(theta) * spec.AttnFactor);
                    _sin[t * half + i] = (float)(Math.Sin(theta) * spec.AttnFactor);
                }
            }
            _tableSpec[slot] = spec;
            _tableStart[slot] = startPos;
            _tableCount[slot] = nTokens;
            _tablePositional[slot] = false;
        }
        return slot;
    }

    /// <summary>
    /// As <see cref="Run"/>, token t of the batch at position <paramref name="positions"/>[t] (the sequences of a server
    /// step, each at its own positions). Each row gets the same table values, so the same result, as in <see cref="Run"/>.
    /// The table is kept for the next call with the same positions (Q and K, and every layer of the step).
    /// </summary>
    public void RunPositions(WorkerPool pool, float* x, int nTokens, int nHeads, ReadOnlySpan<int> positions, RopeSpec spec)
        => Apply(pool, TablePositions(nTokens, positions, spec), x, nTokens, nHeads, spec);

    /// <summary>As <see cref="Table"/>, token t at position <paramref name="positions"/>[t].</summary>
    public int TablePositions(int nTokens, ReadOnlySpan<int> positions, RopeSpec spec)
    {
        int half = spec.Dims / 2;
        if ((long)nTokens * half > _capacity) throw new ArgumentException($"rope for {nTokens} tokens exceeds the table prepared for the batch size");
        if (positions.Length != nTokens) throw new ArgumentException($"{positions.Length} positions for {nTokens} tokens", nameof(positions));
        int slot = -1;
        for (int k = 0; k < Tables; k++)
            if (ReferenceEquals(spec, _tableSpec[k]) && _tablePositional[k] && _tablePositions[k] is { } p && _tableCount[k] == nTokens && positions.SequenceEqual(p.AsSpan(0, nTokens))) slot = k;
        if (slot < 0)
        {
            slot = 1 - _lastFilled;
            _lastFilled = slot;
            float* cos = _cosTables[slot], sin = _sinTables[slot];
            for (int t = 0; t < nTokens; t++)
            {
                for (int i = 0; i < half; i++)
                {
                    double theta = spec.Theta(positions[t], i);
                    cos[t * half + i] = (float)(Math.Cos(theta) * spec.AttnFactor);
                    sin[t * half + i] = (float)(Math.Sin(theta) * spec.AttnFactor);
                }
            }
            var kept = _tablePositions[slot];
            if (kept is null || kept.Length < nTokens) kept = new int[Math.Max(nTokens, _capacity / Math.Max(1, half))];
            positions.CopyTo(kept);
            _tablePositions[slot] = kept;
            _tablePositional[slot] = true;
            _tableSpec[slot] = spec;
            _tableStart[slot] = -1;
            _tableCount[slot] = nTokens;
        }
        return slot;
    }

    /// <summary>Rotates the nHeads heads of each of the nTokens rows of x by table <paramref name="slot"/>'s rows.</summary>
    public void Apply(WorkerPool pool, int slot, float* x, int nTokens, int nHeads, RopeSpec spec)
    {
        _cos = _cosTables[slot];
        _sin = _sinTables[slot];
        _x = x;
        _nTokens = nTokens;
        _nHeads = nHeads;
        _headDim = spec.HeadDim;
        _half = spec.Dims / 2;
        _neox = spec.Neox;
        pool.Run(this, (long)nTokens * nHeads * spec.HeadDim);
    }

    /// <summary>
    /// One head <paramref name="v"/> rotated by a table row (<paramref name="c"/>, <paramref name="s"/>: half values), written to
    /// <paramref name="dst"/>[d · stride] for d &lt; headDim (elements past 2 · half copied): the float operations of
    /// <see cref="Execute"/>, so the same bits. <paramref name="dst"/> may not overlap <paramref name="v"/>.
    /// </summary>
    public static void Rotate(float* v, float* c, float* s, int half, int headDim, bool neox, float* dst, long stride)
    {
        if (neox)
        {
            float* u = v + half;
            for (int i = 0; i < half; i++)
            {
                float x0 = v[i], x1 = u[i];
                dst[i * stride] = x0 * c[i] - x1 * s[i];
                dst[(i + half) * stride] = x0 * s[i] + x1 * c[i];
            }
        }
        else
        {
            for (int i = 0; i < half; i++)
            {
                float x0 = v[2 * i], x1 = v[2 * i + 1];
                dst[2 * i * stride] = x0 * c[i] - x1 * s[i];
                dst[(2 * i + 1) * stride] = x0 * s[i] + x1 * c[i];
            }
        }
        for (int d = 2 * half; d < headDim; d++) dst[d * stride] = v[d];
    }

    public override void Execute(int thread, int threadCount)
    {
        var (r0, r1) = WorkerPool.Range((long)_nTokens * _nHeads, thread, threadCount);
        for (long r = r0; r < r1; r++)
        {
            long t = r / _nHeads;
            float* v = _x + r * _headDim;
            float* c = _cos + t * _half;
            float* s = _sin + t * _half;
            if (_neox)
            {
                float* u = v + _half;
                for (int i = 0; i < _half; i++)
                {
                    float x0 = v[i], x1 = u[i];
                    v[i] = x0 * c[i] - x1 * s[i];
                    u[i] = x0 * s[i] + x1 * c[i];
                }
                continue;
            }
            for (int i = 0; i < _half; i++)
            {
                float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * c[i] - x1 * s[i];
                v[2 * i + 1] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}
