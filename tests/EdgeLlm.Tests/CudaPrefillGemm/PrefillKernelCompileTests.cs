using System.Text;
using System.Text.RegularExpressions;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.CudaPrefillGemm;

/// <summary>
/// The prefill kernels (kernels/gemm.cu, kernels/attention_prefill.cu) through NVRTC and its ptxas for the oldest
/// supported architecture (sm_61), the last without int8 tensor cores (sm_75), the first with them (sm_80), Jetson
/// Orin (sm_87) and H100 (sm_90): the cubin builds, nothing spills to local memory, the registers fit the 128-thread launch bounds and
/// the static shared memory is the declared tile layout under 48 KiB. The sm_80+ PTX holds the int8 MMAs
/// (m16n8k32, and m16n8k16 for Q6_K's half-block scales), the sm_61 PTX dp4a. No GPU is involved. Also the
/// backend's choices: the GEMM path per architecture and which products and attentions take the prefill kernels.
/// </summary>
public class PrefillKernelCompileTests(Xunit.Abstractions.ITestOutputHelper output)
{
    // kernels/gemm.cu's GemmTiles: int8 weight and activation tiles of 64 rows x (256 + 16) bytes, then the float
    // scales: d_w [64][16], m_w [64][8], dx [64][8], sx [64][8].
    private const int GemmSharedBytes = 2 * 64 * 272 + (64 * 16 + 3 * 64 * 8) * 4;

    // kernels/gemm.cu's GemmFloatTiles: weights and activations as 32 k x 65 floats.
    private const int GemmFloatSharedBytes = 2 * 32 * 65 * 4;

    // kernels/gemm.cu's GemmHalfTiles: weights and activations as 64 rows x 20 words (16 element pairs + 4 of padding),
    // two stages (the next K step's tiles load while the MMAs read the current ones).
    private const int GemmHalfSharedBytes = 2 * 2 * 64 * 20 * 4;

    // kernels/attention_prefill.cu: q [8][256], k [16][257], v [16][256] floats.
    private const int AttentionSharedBytes = (8 * 256 + 16 * 257 + 16 * 256) * 4;

    public static TheoryData<int> Archs() => new() { 61, 75, 80, 87, 90 };

    [NvrtcTheory]
    [MemberData(nameof(Archs))]
    public void GemmKernelsFitTheirLaunchBoundsWithoutSpills(int arch)
    {
        var log = PtxasLog("gemm.cu", arch);
        Assert.Equal(4 * CudaKernels.GemmTypes.Length + CudaKernels.GemmFloatTypes.Length + CudaKernels.GemmHalfTypes.Length, CudaKernels.EntryPoints["gemm.cu"].Length);
        foreach (string entry in CudaKernels.EntryPoints["gemm.cu"])
        {
            bool halfMma = CudaKernels.GemmHalfTypes.Any(t => entry == $"gemm_mma_{CudaKernels.Suffix(t)}");
            // below sm_80 the half-precision MMA kernels are a trap (never launched there): no tiles left to count
            int shared = CudaKernels.GemmFloatTypes.Any(t => entry == $"gemm_{CudaKernels.Suffix(t)}") ? GemmFloatSharedBytes
                : halfMma ? (arch >= 80 ? GemmHalfSharedBytes : 0) : GemmSharedBytes;
            output.WriteLine($"sm_{arch} {entry}: {CheckFigures(log, entry, arch, shared, CudaPrefill.GemmThreads)} registers, no spills");
        }
    }

    [NvrtcTheory]
    [MemberData(nameof(Archs))]
    public void FlashAttentionKernelsFitTheirLaunchBoundsWithoutSpills(int arch)
    {
        var log = PtxasLog("attention_prefill.cu", arch);
        foreach (string entry in CudaKernels.EntryPoints["attention_prefill.cu"])
            CheckFigures(log, entry, arch, AttentionSharedBytes, CudaPrefill.AttentionThreads);
    }

    [NvrtcTheory]
    [InlineData(80)]
    [InlineData(90)]
    public void TensorCoreGemmsUseInt8Mma(int arch)
    {
        CudaTestEnvironment.RequireNvrtc();
        string ptx = Encoding.UTF8.GetString(KernelCompileMemo.Compile("gemm.cu", arch, cubin: false).Image);
        Assert.Contains("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32", ptx);
        Assert.Contains("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32", ptx);
        Assert.Contains("dp4a.s32.s32", ptx); // the dp4a kernels are in the same module
    }

    /// <summary>
    /// The F16/BF16 GEMMs' half-precision MMAs on sm_80+: f16 and bf16 inputs, f32 accumulators, in their own kernels;
    /// the weights' next tile by 16-byte cp.async with a zero-fill size, the fragments by ldmatrix.x4 (HalfGemmHostTests
    /// checks both under the host emulation).
    /// </summary>
    [NvrtcTheory]
    [InlineData(80)]
    [InlineData(90)]
    public void HalfGemmsUseHalfPrecisionMma(int arch)
    {
        CudaTestEnvironment.RequireNvrtc();
        string ptx = Encoding.UTF8.GetString(KernelCompileMemo.Compile("gemm.cu", arch, cubin: false).Image);
        foreach (var (entry, mma) in new[] { ("gemm_mma_f16", ".f32.f16.f16.f32"), ("gemm_mma_bf16", ".f32.bf16.bf16.f32") })
        {
            int at = ptx.IndexOf($".entry {entry}(", StringComparison.Ordinal);
            Assert.True(at >= 0, $"no .entry {entry}");
            int end = ptx.IndexOf(".entry ", at + 7, StringComparison.Ordinal);
            string body = end < 0 ? ptx[at..] : ptx[at..end];
            Assert.Contains("mma.sync.aligned.m16n8k16.row.col" + mma, body);
            Assert.Contains("cp.async.cg.shared.global", body);
            Assert.Contains("cp.async.wait_group 0", body);
            Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.shared.b16", body);
            Assert.DoesNotContain("trap;", body);
        }
    }

    [NvrtcFact]
    public void BelowSm80TheGemmModuleHasNoMma()
    {
        CudaTestEnvironment.RequireNvrtc();
        string ptx = Encoding.UTF8.GetString(KernelCompileMemo.Compile("gemm.cu", 75, cubin: false).Image);
        Assert.DoesNotContain("mma.sync", ptx);
        Assert.Contains("dp4a.s32.s32", ptx);
    }

    [Theory]
    [InlineData(61, CudaGemmPath.Dp4a)]
    [InlineData(70, CudaGemmPath.Dp4a)]
    [InlineData(75, CudaGemmPath.Dp4a)]
    [InlineData(80, CudaGemmPath.Mma)]
    [InlineData(87, CudaGemmPath.Mma)]
    [InlineData(90, CudaGemmPath.Mma)]
    [InlineData(52, CudaGemmPath.None)]
    public void TheGemmPathFollowsTheCompiledArchitecture(int arch, CudaGemmPath path) => Assert.Equal(path, CudaPrefill.PathFor(arch));

    [Fact]
    public void BatchesOfEveryTypeTakeTheGemmAndDecodeTheMatvec()
    {
        Assert.Equal(15, CudaKernels.WeightTypes.Length); // F32, F16, BF16 and the twelve block types
        foreach (var t in CudaKernels.WeightTypes)
        {
            // every type of the CPU's table: the block types through the int8 kernels, F32/F16/BF16 through the float ones
            Assert.True(CudaPrefill.UsesGemm(CudaGemmPath.Mma, t, 2));
            Assert.True(CudaPrefill.UsesGemm(CudaGemmPath.Dp4a, t, 512));
            Assert.Equal(CudaKernels.IsIntegerDot(t), CudaKernels.GemmTypes.Contains(t));
            Assert.Equal(!CudaKernels.IsIntegerDot(t), CudaKernels.GemmFloatTypes.Contains(t));
            Assert.False(CudaPrefill.UsesGemm(CudaGemmPath.Mma, t, 1)); // decode keeps the matvec
            Assert.False(CudaPrefill.UsesGemm(CudaGemmPath.None, t, 64));
        }
        foreach (var t in CudaKernels.WeightTypes)
        {
            bool half = t is GgmlType.F16 or GgmlType.BF16;
            Assert.Equal(half, CudaPrefill.UsesHalfMma(CudaGemmPath.Mma, t)); // F16/BF16 on sm_80+: the half-precision MMA
            Assert.False(CudaPrefill.UsesHalfMma(CudaGemmPath.Dp4a, t));       // below: the float tiles
            Assert.False(CudaPrefill.UsesHalfMma(CudaGemmPath.None, t));
        }
        Assert.Equal((2u, 9u), CudaPrefill.GemmGrid(65, 513));
        Assert.Equal((32u, 64u), CudaPrefill.AttentionGrid(32, 512));
        Assert.True(CudaPrefill.UsesFlashAttention(2));
        Assert.False(CudaPrefill.UsesFlashAttention(1));
    }

    [Fact]
    public void TheDefaultBatchIs512OnCudaAnd64Elsewhere()
    {
        using var file = GgufFile.Open(TestPaths.Stories260K);
        Assert.Equal(512, ResolvedOptions.Resolve(file, new BackendOptions { Device = "cuda", ContextSize = 2048 }).MaxBatch);
        Assert.Equal(512, ResolvedOptions.Resolve(file, new BackendOptions { Device = "cuda:1", ContextSize = 1024 }).MaxBatch);
        Assert.Equal(BackendOptions.DefaultMaxBatch, ResolvedOptions.Resolve(file, new BackendOptions { Device = "cpu", ContextSize = 2048 }).MaxBatch);
        Assert.Equal(BackendOptions.DefaultMaxBatch, ResolvedOptions.Resolve(file, new BackendOptions { ContextSize = 2048 }).MaxBatch);
        Assert.Equal(100, ResolvedOptions.Resolve(file, new BackendOptions { Device = "cuda", ContextSize = 100 }).MaxBatch); // capped by the context
        Assert.Equal(32, ResolvedOptions.Resolve(file, new BackendOptions { Device = "cuda", ContextSize = 2048, MaxBatch = 32 }).MaxBatch); // asked for
    }

    private static string PtxasLog(string file, int arch)
    {
        CudaTestEnvironment.RequireNvrtc();
        var k = KernelCompileMemo.CubinWithPtxasFigures(file, arch);
        Assert.True(k.IsCubin);
        return k.Log;
    }

    private static int CheckFigures(string log, string entry, int arch, int sharedBytes, int threads)
    {
        string head = $"Compiling entry function '{entry}'";
        int at = log.IndexOf(head, StringComparison.Ordinal);
        Assert.True(at >= 0, $"sm_{arch}: no ptxas figures for {entry} in:\n{log}");
        int next = log.IndexOf("Compiling entry function", at + head.Length, StringComparison.Ordinal);
        string part = next < 0 ? log[at..] : log[at..next];
        var regs = Regex.Match(part, @"Used (\d+) registers");
        var spill = Regex.Match(part, @"(\d+) bytes spill stores");
        var spillLoads = Regex.Match(part, @"(\d+) bytes spill loads");
        var stack = Regex.Match(part, @"(\d+) bytes stack frame");
        var smem = Regex.Match(part, @"(\d+) bytes smem");
        Assert.True(regs.Success && spill.Success && spillLoads.Success && (smem.Success || sharedBytes == 0), $"sm_{arch} {entry}: figures missing in:\n{part}");
        int r = int.Parse(regs.Groups[1].Value);
        Assert.True(r <= 255 && r * threads <= 65536, $"sm_{arch} {entry}: {r} registers x {threads} threads");
        Assert.Equal(0, int.Parse(spill.Groups[1].Value));
        Assert.Equal(0, int.Parse(spillLoads.Groups[1].Value));
        Assert.True(!stack.Success || int.Parse(stack.Groups[1].Value) == 0, $"sm_{arch} {entry}: a stack frame (local arrays):\n{part}");
        Assert.Equal(sharedBytes, smem.Success ? int.Parse(smem.Groups[1].Value) : 0);
        Assert.True(sharedBytes <= 48 * 1024);
        return r;
    }
}
