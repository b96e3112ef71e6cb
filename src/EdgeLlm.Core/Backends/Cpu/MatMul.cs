using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// dst[t, r] = dot(W row r, x[t]) for a batch of tokens. Threads split the weight rows; each thread
/// reads each of its rows once and dots it with every token (the row stays in cache), so a batch costs
/// one pass over the weights. The weight type is switched on once per call, then a tight row loop:
/// F32 rows are dotted in place; F16/BF16 rows are widened into the thread's scratch row first; the
/// block-quantized types go through <see cref="QuantRef.Dot"/> until the int8 kernels land.
/// </summary>
internal sealed unsafe class MatMul : ParallelWork
{
    private CpuWeight _w = null!;
    private float* _x;
    private float* _dst;
    private int _nTokens;
    private readonly float*[] _scratch;

    /// <param name="scratch">one row buffer per thread, at least as long as the longest weight row.</param>
    public MatMul(float*[] scratch) => _scratch = scratch;

    public void Run(WorkerPool pool, CpuWeight w, float* x, float* dst, int nTokens)
    {
        _w = w;
        _x = x;
        _dst = dst;
        _nTokens = nTokens;
        pool.Run(this);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (r0, r1) = WorkerPool.Range(_w.Rows, thread, threadCount);
        switch (_w.Type)
        {
            case GgmlType.F32: RowsF32(r0, r1); break;
            case GgmlType.F16: RowsWidened(r0, r1, _scratch[thread], bf16: false); break;
            case GgmlType.BF16: RowsWidened(r0, r1, _scratch[thread], bf16: true); break;
            default: RowsQuantRef(r0, r1); break;
        }
    }

    private void RowsF32(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            float* row = (float*)_w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = Dot.F32(row, _x + (long)t * n, n);
        }
    }

    private void RowsWidened(long r0, long r1, float* scratch, bool bf16)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            if (bf16) HalfConvert.BF16ToF32((ushort*)_w.Row(r), scratch, n);
            else HalfConvert.F16ToF32((ushort*)_w.Row(r), scratch, n);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = Dot.F32(scratch, _x + (long)t * n, n);
        }
    }

    private void RowsQuantRef(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        var type = _w.Type;
        for (long r = r0; r < r1; r++)
        {
            byte* row = _w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = QuantRef.Dot(type, row, _x + (long)t * n, n);
        }
    }
}
