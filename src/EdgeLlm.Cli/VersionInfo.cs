using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Cli;

/// <summary>What `edgellm --version` (and bench) print: version, which matrix entry this binary is, which of its images runs (x86-64-v3 or the embedded x86-64-v4) and the SIMD it can use.</summary>
public static class VersionInfo
{
    public static string Version => typeof(VersionInfo).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    public static string Describe()
    {
        string build = Metadata("EdgeLlmBuild") ?? (System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported ? "dotnet (JIT)" : "custom");
        string isa = Metadata("EdgeLlmInstructionSet") ?? "default";
        return $"edgellm {Version} (commit {Commit}, {build}, {RuntimeInformation.RuntimeIdentifier}, baseline {isa}; {ImageSelection.Describe()}; SIMD: {Simd()})";
    }

    /// <summary>The git commit this binary was built from (embedded at build time), or "unknown".</summary>
    public static string Commit => Metadata("EdgeLlmCommit") is { Length: > 0 } c ? c : "unknown";

    public static string Simd()
    {
        var parts = new List<string>();
        if (RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86)
        {
            if (Avx512F.IsSupported) parts.Add("AVX-512");
            if (Avx512BW.IsSupported) parts.Add("AVX-512BW");
            if (Avx2.IsSupported) parts.Add("AVX2");
            if (Fma.IsSupported) parts.Add("FMA");
            if (AvxVnni.IsSupported) parts.Add("AVX-VNNI");
        }
        else if (RuntimeInformation.ProcessArchitecture == Architecture.Arm64)
        {
            if (AdvSimd.IsSupported) parts.Add("Neon");
            if (Dp.IsSupported) parts.Add("DotProd");
        }
        parts.Add($"Vector512={(Vector512.IsHardwareAccelerated ? "yes" : "no")}");
        parts.Add($"Vector256={(Vector256.IsHardwareAccelerated ? "yes" : "no")}");
        return string.Join(' ', parts);
    }

    private static string? Metadata(string key)
    {
        foreach (var a in typeof(VersionInfo).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>())
            if (a.Key == key) return a.Value;
        return null;
    }
}
