namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// A weight's repack for its GEMM (<see cref="Kernels.CpuKernelRow.Repack"/>) split over the pool's threads by whole
/// groups of <see cref="Kernels.CpuKernelRow.PackRows"/> rows (each group's bytes depend on its rows only, so the split
/// does not change them). Runs once per weight, at its first batched matmul; a 7B Q8_0 model is several GB to repack.
/// </summary>
internal sealed unsafe class RepackWork : ParallelWork
{
    private Kernels.CpuKernelRow _row = null!;
    private CpuWeight _w = null!;
    private byte* _dst;

    public void Run(WorkerPool pool, Kernels.CpuKernelRow row, CpuWeight w, byte* dst)
    {
        _row = row;
        _w = w;
        _dst = dst;
        pool.Run(this);
    }

    public override void Execute(int thread, int threadCount)
    {
        int n = checked((int)_w.Ne0), groupRows = _row.PackRows;
        long groupBytes = _row.PackedBytes(groupRows, n);
        var (g0, g1) = WorkerPool.Range(_w.Rows / groupRows, thread, threadCount);
        if (g0 < g1)
            _row.Repack(_w.Data + g0 * groupRows * _w.RowBytes, _w.RowBytes, (g1 - g0) * groupRows, n, _dst + g0 * groupBytes);
    }
}
