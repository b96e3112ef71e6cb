using System.Diagnostics;
using System.Text.RegularExpressions;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.CudaPrefillGemm;

/// <summary>
/// perf/cuda-check.sh --list names, for every model its numerics check covers, the kernel the CUDA prefill of that
/// weight type takes; the list must cover every weight type of the backend and agree with the backend's choice
/// (<see cref="CudaPrefill.UsesGemm"/>), so the device table says which path each prefill number measured.
/// </summary>
public class CheckScriptPrefillListTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheListNamesTheBackendsPrefillKernelForEveryType(bool quick)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot };
        psi.ArgumentList.Add(Path.Combine(TestPaths.RepoRoot, "perf", "cuda-check.sh"));
        psi.ArgumentList.Add("--list");
        if (quick) psi.ArgumentList.Add("--quick");
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd(), errors = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, errors);

        var seen = new HashSet<GgmlType>();
        foreach (Match m in Regex.Matches(output, @"(?m)^tiny-(\S+) +(\S+)$"))
        {
            var type = CudaKernels.WeightTypes.Single(t => CudaKernels.Suffix(t) == m.Groups[1].Value);
            Assert.True(CudaPrefill.UsesGemm(CudaGemmPath.Mma, type, 512) && CudaPrefill.UsesGemm(CudaGemmPath.Dp4a, type, 512));
            string want = CudaKernels.IsIntegerDot(type) ? "gemm-int8" : CudaPrefill.UsesHalfMma(CudaGemmPath.Mma, type) ? "gemm-half" : "gemm-float";
            Assert.Equal(want, m.Groups[2].Value);
            Assert.True(seen.Add(type), $"{type} listed twice");
        }
        Assert.Equal(CudaKernels.WeightTypes.OrderBy(t => t), seen.OrderBy(t => t));
        Assert.Equal(quick ? 0 : CudaKernels.WeightTypes.Length + 1, Regex.Matches(output, @"(?m)^7b2l-\S+ +gemm-(int8|half|float)$").Count); // + q4_k_m
    }
}
