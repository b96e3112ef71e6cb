using System.Runtime.Intrinsics;
using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The rung choice against what the kernel (Linux's /proc/cpuinfo) says the CPU has, not against the .NET
/// intrinsics the choice itself reads. Skipped where there is no /proc/cpuinfo, and where the process was told to
/// hide instruction sets from .NET (DOTNET_Enable*=0) or to pick a rung (EDGELLM_KERNEL_RUNG), which cpuinfo cannot
/// know about.
/// </summary>
public class KernelRungTests
{
    /// <summary>The CPU feature words of /proc/cpuinfo's first processor ("flags" on x86, "Features" on arm64).</summary>
    internal static HashSet<string>? CpuFlags()
    {
        if (!File.Exists("/proc/cpuinfo")) return null;
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
        {
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            string key = line[..colon].Trim();
            if (key is "flags" or "Features")
                return new HashSet<string>(line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        }
        return null;
    }

    /// <summary>The rung cpuinfo says is best: AVX-512 F+BW (where .NET deems 512-bit vectors fast), AVX2+FMA, asimd, else scalar.</summary>
    private static Rung ExpectedBest(HashSet<string> f)
    {
        if (f.Contains("avx512f") && f.Contains("avx512bw") && Vector512.IsHardwareAccelerated) return Rung.Avx512;
        if (f.Contains("avx2") && f.Contains("fma")) return Rung.Avx2;
        if (f.Contains("asimd")) return Rung.Neon;
        return Rung.Scalar;
    }

    private static bool ExpectedSupported(HashSet<string> f, Rung r) => r switch
    {
        Rung.Scalar => true,
        Rung.Avx2 => f.Contains("avx2") && f.Contains("fma"),
        Rung.Avx512 => f.Contains("avx512f") && f.Contains("avx512bw") && Vector512.IsHardwareAccelerated,
        Rung.Neon => f.Contains("asimd"),
        _ => false,
    };

    [CpuInfoFact]
    public void SelectedIsTheBestRungTheCpuHas()
    {
        HashSet<string> f = CpuFlags()!;
        Assert.Equal(ExpectedBest(f), KernelRung.Selected);
        Assert.Equal(ExpectedBest(f), KernelRung.Best());
    }

    [CpuInfoFact]
    public void ChooseHonoursRequestsForRungsTheCpuHasOnly()
    {
        HashSet<string> f = CpuFlags()!;
        Rung best = ExpectedBest(f);
        Assert.Equal(Rung.Scalar, KernelRung.Choose("scalar"));
        Assert.Equal(Rung.Scalar, KernelRung.Choose(" Scalar "));
        Assert.Equal(best, KernelRung.Choose(null));
        Assert.Equal(best, KernelRung.Choose("sse9"));
        Assert.Equal(ExpectedSupported(f, Rung.Avx2) ? Rung.Avx2 : best, KernelRung.Choose("avx2"));
        Assert.Equal(ExpectedSupported(f, Rung.Avx512) ? Rung.Avx512 : best, KernelRung.Choose("AVX512"));
        Assert.Equal(ExpectedSupported(f, Rung.Neon) ? Rung.Neon : best, KernelRung.Choose("neon"));
    }

    [CpuInfoFact]
    public void SupportedListsScalarFirstThenWhatTheCpuHas()
    {
        HashSet<string> f = CpuFlags()!;
        var want = new List<Rung> { Rung.Scalar };
        foreach (Rung r in new[] { Rung.Avx2, Rung.Avx512, Rung.Neon })
            if (ExpectedSupported(f, r)) want.Add(r);
        Assert.Equal(want.ToArray(), KernelRung.Supported());
    }

    [CpuInfoFact]
    public void ExtensionFlagsFollowTheCpu()
    {
        HashSet<string> f = CpuFlags()!;
        Assert.Equal(f.Contains("avx_vnni"), KernelRung.UseAvxVnni);
        Assert.Equal(f.Contains("avx512vbmi"), KernelRung.UseAvx512Vbmi);
        Assert.Equal(f.Contains("gfni"), KernelRung.UseGfni);
        Assert.Equal(f.Contains("asimddp"), KernelRung.UseDotProd);
    }
}

/// <summary>A fact that needs /proc/cpuinfo and a process that sees the CPU's instruction sets as they are.</summary>
public sealed class CpuInfoFactAttribute : FactAttribute
{
    public CpuInfoFactAttribute()
    {
        if (KernelRungTests.CpuFlags() is null) Skip = "no /proc/cpuinfo flags on this system";
        else if (Environment.GetEnvironmentVariable("EDGELLM_KERNEL_RUNG") is { Length: > 0 })
            Skip = "EDGELLM_KERNEL_RUNG picks the rung in this process";
        else if (Environment.GetEnvironmentVariables().Keys.Cast<string>().Any(k =>
                     (k.StartsWith("DOTNET_Enable", StringComparison.Ordinal) || k.StartsWith("EDGELLM_KERNEL_", StringComparison.Ordinal))
                     && Environment.GetEnvironmentVariable(k) == "0"))
            Skip = "a DOTNET_Enable*=0 or EDGELLM_KERNEL_*=0 variable hides an instruction set from this process";
    }
}
