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
        new() { Kind = CudaOpKind.Rope, X = x, RopeTable = 0x4000, Tokens = 1, Heads = 4, StartPos = start, PosDelta = delta };

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
        var mm = new CudaOp { Kind = CudaOpKind.MatMul, Weight = W, X = X, Dst = Y, Tokens = 1 };
        Assert.True(mm.SameLaunch(mm with { }));
        Assert.False(mm.SameLaunch(mm with { Tokens = 2 }));
        Assert.False(mm.SameLaunch(mm with { Dst = X }));
        Assert.False(mm.SameLaunch(mm with { Kind = CudaOpKind.Add }));
        var norm = new CudaOp { Kind = CudaOpKind.RmsNorm, X = X, Weight = W, Dst = Y, Tokens = 1, Dim = 64, Eps = 1e-5f };
        Assert.False(norm.SameLaunch(norm with { Eps = 1e-6f }));
        // Attention: scale, softcap and sliding window are launch arguments; gemma2's local and global
        // layers differ only in the window, so a graph must not replay one for the other.
        var att = new CudaOp { Kind = CudaOpKind.Attention, X = X, KCache = Y, VCache = Y, Dst = X, Tokens = 1, Heads = 4, HeadDim = 16, KvDim = 32, Scale = 0.25f };
        Assert.True(att.SameLaunch(att with { }));
        Assert.False(att.SameLaunch(att with { Scale = 0.125f }));
        Assert.False(att.SameLaunch(att with { Softcap = 50f }));
        Assert.False(att.SameLaunch(att with { Window = 4096 }));
        var glu = new CudaOp { Kind = CudaOpKind.SwiGlu, X = X, Y = Y, Count = 64 };
        Assert.False(glu.SameLaunch(glu with { Kind = CudaOpKind.GeGlu }));
        var cap = new CudaOp { Kind = CudaOpKind.Softcap, X = X, Count = 64, Softcap = 30f };
        Assert.False(cap.SameLaunch(cap with { Softcap = 50f }));
        Assert.False(cap.SameLaunch(cap with { Kind = CudaOpKind.Scale }));
        var copy = new CudaOp { Kind = CudaOpKind.Copy, X = X, Dst = Y, SrcOffset = 0, DstOffset = 0, Count = 64 };
        Assert.False(copy.SameLaunch(copy with { SrcOffset = 1 }));
    }
}
