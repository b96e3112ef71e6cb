using System.Globalization;
using EdgeLlm.Backends.Cuda;

namespace EdgeLlm.Tests.CudaFusion;

/// <summary>EDGELLM_CUDA_PROFILE / EDGELLM_CUDA_FUSE parsing and the per-kernel table, without a GPU (the times are given).</summary>
public class CudaProfileTests
{
    private static CudaSettings Settings(string? graphs = null, string? sync = null, string? fuse = null, string? profile = null) =>
        CudaSettings.From(name => name switch
        {
            CudaSettings.GraphsVariable => graphs,
            CudaSettings.SyncVariable => sync,
            CudaSettings.FuseVariable => fuse,
            CudaSettings.ProfileVariable => profile,
            _ => null,
        });

    [Fact]
    public void ProfilingIsOffAndFusionOnByDefault()
    {
        var s = Settings();
        Assert.False(s.Profile);
        Assert.True(s.Fuse);
        Assert.True(s.Graphs);
    }

    [Theory]
    [InlineData("1", null, true, false)]  // profiling times each launch: no graphs
    [InlineData("1", "1", true, false)]   // even when graphs are asked for
    [InlineData("0", null, false, true)]
    [InlineData("yes", null, false, true)] // only "1" switches it on
    public void ProfileVariableSwitchesProfilingOnAndGraphsOff(string profile, string? graphs, bool profileOn, bool graphsOn)
    {
        var s = Settings(graphs: graphs, profile: profile);
        Assert.Equal(profileOn, s.Profile);
        Assert.Equal(graphsOn, s.Graphs);
    }

    [Theory]
    [InlineData("0", false)]
    [InlineData("1", true)]
    [InlineData("no", true)] // only "0" switches fusion off
    public void FuseVariableSwitchesTheFusedKernelsOff(string fuse, bool on) => Assert.Equal(on, Settings(fuse: fuse).Fuse);

    [Fact]
    public void TheTableSumsEachKernelsLaunchesLongestFirst()
    {
        var p = new CudaProfile();
        p.Add("matvec_q4_0_t1", 1.5);
        p.Add("rmsnorm_f32", 0.5);
        p.Add("matvec_q4_0_t1", 2.5);
        p.Add("matvec_q4_0_t1", 2.0);
        p.Add("rmsnorm_f32", 1.5);
        p.Add(CudaProfile.CopyName, 0.0);
        var rows = p.Rows();
        Assert.Equal(["matvec_q4_0_t1", "rmsnorm_f32", CudaProfile.CopyName], rows.Select(r => r.Kernel));
        Assert.Equal(3, rows[0].Calls);
        Assert.Equal(6.0, rows[0].TotalMs, 12);
        Assert.Equal(2000.0, rows[0].MeanUs, 9);
        Assert.Equal(2, rows[1].Calls);
        Assert.Equal(1000.0, rows[1].MeanUs, 9);
        Assert.Equal(6, p.Calls);
        Assert.Equal(8.0, p.TotalMs, 12);

        var lines = p.Format().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(5, lines.Length); // header, three kernels, total
        Assert.Equal(["kernel", "calls", "total", "ms", "mean", "us", "share"], Columns(lines[0]));
        Assert.Equal(["matvec_q4_0_t1", "3", "6.000", "2000.00", "75.0", "%"], Columns(lines[1]));
        Assert.Equal(["rmsnorm_f32", "2", "2.000", "1000.00", "25.0", "%"], Columns(lines[2]));
        Assert.Equal([CudaProfile.CopyName, "1", "0.000", "0.00", "0.0", "%"], Columns(lines[3]));
        Assert.Equal(["total", "6", "8.000", (8000.0 / 6).ToString("F2", CultureInfo.InvariantCulture), "100.0", "%"], Columns(lines[4]));
    }

    [Fact]
    public void AnEmptyTableHasItsHeaderAndAZeroTotal()
    {
        var lines = new CudaProfile().Format().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Equal(["total", "0", "0.000", "0.00", "0.0", "%"], Columns(lines[1]));
    }

    [Theory]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void AnImpossibleTimeIsRefused(double ms) => Assert.Throws<ArgumentOutOfRangeException>(() => new CudaProfile().Add("k", ms));

    private static string[] Columns(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
}
