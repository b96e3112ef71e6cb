using EdgeLlm.Backends.Cuda;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// The rule that decides whether a recorded decode step may replay a captured CUDA graph: everything must match
/// except the absolute position (kernels read it from device memory), which only counts relative to the step's
/// first position. Runs without a GPU: no device memory is touched.
/// </summary>
public class CudaOpTests
{
    private static readonly CudaBuffer X = new(64, 0x1000, 4), Y = new(64, 0x2000, 4);
    private static readonly CudaWeight W = new("w", EdgeLlm.Gguf.GgmlType.Q4_0, 64, 8, 0x3000, 36, owned: true);

    private static CudaOp Rope(int start, int delta, CudaBuffer x) =>
        new() { Kind = CudaOpKind.Rope, A = x, Table = 0x4000, I0 = 1, I1 = 4, StartPos = start, PosDelta = delta };

    [Fact]
    public void AbsolutePositionsDoNotMatterRelativeOnesDo()
    {
        Assert.True(Rope(5, 0, X).SameLaunch(Rope(6, 0, X)));
        Assert.False(Rope(5, 0, X).SameLaunch(Rope(5, 1, X)));
    }

    [Fact]
    public void OperandsAndArgumentsMustMatch()
    {
        Assert.False(Rope(5, 0, X).SameLaunch(Rope(5, 0, Y)));
        var mm = new CudaOp { Kind = CudaOpKind.MatMul, W = W, A = X, D = Y, I0 = 1 };
        Assert.True(mm.SameLaunch(mm with { }));
        Assert.False(mm.SameLaunch(mm with { I0 = 2 }));
        Assert.False(mm.SameLaunch(mm with { D = X }));
        Assert.False(mm.SameLaunch(mm with { Kind = CudaOpKind.Add }));
        var norm = new CudaOp { Kind = CudaOpKind.RmsNorm, A = X, W = W, D = Y, I0 = 1, I1 = 64, F0 = 1e-5f };
        Assert.False(norm.SameLaunch(norm with { F0 = 1e-6f }));
        // Attention: scale (F0), softcap (F1) and sliding window (I4) are launch arguments; gemma2's local and global
        // layers differ only in the window, so a graph must not replay one for the other.
        var att = new CudaOp { Kind = CudaOpKind.Attention, A = X, B = Y, C = Y, D = X, I0 = 1, I1 = 4, I2 = 16, I3 = 32, F0 = 0.25f };
        Assert.True(att.SameLaunch(att with { }));
        Assert.False(att.SameLaunch(att with { F0 = 0.125f }));
        Assert.False(att.SameLaunch(att with { F1 = 50f }));
        Assert.False(att.SameLaunch(att with { I4 = 4096 }));
        var glu = new CudaOp { Kind = CudaOpKind.SwiGlu, A = X, B = Y, L0 = 64 };
        Assert.False(glu.SameLaunch(glu with { Kind = CudaOpKind.GeGlu }));
        var cap = new CudaOp { Kind = CudaOpKind.Softcap, A = X, L0 = 64, F0 = 30f };
        Assert.False(cap.SameLaunch(cap with { F0 = 50f }));
        Assert.False(cap.SameLaunch(cap with { Kind = CudaOpKind.Scale }));
        var copy = new CudaOp { Kind = CudaOpKind.Copy, A = X, D = Y, L0 = 0, L1 = 0, L2 = 64 };
        Assert.False(copy.SameLaunch(copy with { L0 = 1 }));
    }
}
