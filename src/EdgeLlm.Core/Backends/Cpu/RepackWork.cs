namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// A weight's repack for its GEMM (<see cref="Kernels.CpuKernelRow.Repack"/>) split over the pool's threads by whole
/// groups of <see cref="GroupRows"/> rows (each group's bytes depend on its rows only, so the split does not change
/// them). Runs once per weight, at its first batched matmul; a 7B Q8_0 model is several GB to repack.
/// </summary>
internal sealed unsafe class RepackWork : ParallelWork
{
    /// <summary>Rows per repacked group (the Q4_0, Q8_0, Q4_K and Q6_K repacks all take eight rows a group).</summary>
    private const int GroupRows = 8;

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
        int n = checked((int)_w.Ne0);
        long groupBytes = _row.PackedBytes(GroupRows, n);
        var (g0, g1) = WorkerPool.Range(_w.Rows / GroupRows, thread, threadCount);
        if (g0 < g1)
            _row.Repack(_w.Data + g0 * GroupRows * _w.RowBytes, _w.RowBytes, (g1 - g0) * GroupRows, n, _dst + g0 * groupBytes);
    }
}
