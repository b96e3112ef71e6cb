using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Tests.Kernels;

public class KernelRungTests
{
    [Fact]
    public void SelectedIsTheBestSupportedOrTheRequestedOne()
    {
        Assert.True(KernelRung.IsSupported(KernelRung.Selected));
        Assert.Equal(KernelRung.Choose(Environment.GetEnvironmentVariable("EDGELLM_KERNEL_RUNG")), KernelRung.Selected);
    }

    [Fact]
    public void ChooseHonoursSupportedRequestsOnly()
    {
        Assert.Equal(Rung.Scalar, KernelRung.Choose("scalar"));
        Assert.Equal(Rung.Scalar, KernelRung.Choose(" Scalar "));
        Assert.Equal(KernelRung.Best(), KernelRung.Choose(null));
        Assert.Equal(KernelRung.Best(), KernelRung.Choose("sse9"));
        foreach (Rung r in Enum.GetValues<Rung>())
            Assert.Equal(KernelRung.IsSupported(r) ? r : KernelRung.Best(), KernelRung.Choose(r.ToString()));
    }

    [Fact]
    public void SupportedListsScalarFirstAndMatchesIsSupported()
    {
        Rung[] s = KernelRung.Supported();
        Assert.Equal(Rung.Scalar, s[0]);
        foreach (Rung r in Enum.GetValues<Rung>()) Assert.Equal(KernelRung.IsSupported(r), s.Contains(r));
        Assert.Equal(Avx512BW.IsSupported && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated, KernelRung.IsSupported(Rung.Avx512));
    }
}
