using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Model;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// The split (flash-decoding) attention of kernels/attention.cu: attention_split_f16 + attention_combine_f32,
/// compiled by the host C++ compiler (HostEmulation) and run over a fixed grid of chunks for the whole context,
/// against the CPU backend's attention on the same fp16-rounded cache; the cache past the stored rows and the
/// partial results of chunks past the position are NaN, so reading either would show. NVRTC's ptxas figures
/// (registers, static shared memory, spills) are checked against the launch configuration the backend uses.
/// </summary>
public unsafe class FlashDecodingTests
{
    public static TheoryData<int, int, int, int, int, float, int> Cases() => new()
    {
        // headDim, heads, kvHeads, startPos, window, softcap, chunkSize
        { 64, 4, 2, 37, 0, 0f, 16 },     // position inside the third chunk, later chunks unwritten
        { 64, 4, 2, 47, 0, 0f, 16 },     // last position of a chunk
        { 64, 4, 2, 48, 0, 0f, 16 },     // first position of a chunk
        { 128, 8, 1, 70, 0, 0f, 16 },    // group 8 (the most the kernel holds)
        { 128, 32, 8, 100, 0, 0f, 32 },  // 7B/70B-like grouping (4 per kv head)
        { 64, 4, 2, 40, 9, 3f, 8 },      // sliding window across a chunk boundary, softcap
        { 64, 4, 2, 60, 16, 0f, 16 },    // window exactly a chunk: the chunks before it are never read
        { 80, 4, 2, 30, 0, 0f, 16 },     // head dimension 80 (lanes 10..31 idle)
        { 256, 2, 2, 5, 0, 0f, 16 },     // head dimension 256 (every lane busy), one chunk
        { 64, 6, 2, 0, 0, 0f, 16 },      // the very first position, group 3
    };

    [HostCompilerTheory]
    [MemberData(nameof(Cases))]
    public void SplitAttentionMatchesTheCpu(int headDim, int heads, int kvHeads, int startPos, int window, float softcap, int chunkSize)
    {
        const int context = 128;
        int kvDim = kvHeads * headDim, total = startPos + 1;
        var rng = new Random(startPos * 7 + headDim);
        float[] Random(int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();
        var k = Random(total * kvDim, 2f).Select(x => (float)(Half)x).ToArray();
        var v = Random(total * kvDim, 1f).Select(x => (float)(Half)x).ToArray();
        var q = Random(heads * headDim, 2f);
        var options = new AttentionOptions(0.3f, softcap, window);

        float[] want;
        using (var cpu = new CpuBackend(1))
        {
            cpu.Prepare(new BackendLimits(16, 1024, context, 256, 256));
            BackendBuffer Buf(float[] a)
            {
                var b = cpu.Allocate(a.Length);
                a.AsSpan().CopyTo(new Span<float>(((CpuBuffer)b).Data, a.Length));
                return b;
            }
            var cache = new KvCache(cpu, 1, context, kvDim);
            cpu.StoreKv(cache, 0, 0, total, Buf(k), Buf(v));
            var dst = cpu.Allocate(q.Length);
            cpu.Attention(Buf(q), cache, 0, startPos, 1, heads, headDim, dst, options);
            want = new float[q.Length];
            cpu.CopyOut(dst, 0, want);
        }

        var input = new MemoryStream();
        input.Write("attention_split\0"u8);
        foreach (int x in new[] { 1, heads, headDim, kvDim, startPos, window, CudaLaunchLimits.SplitThreads }) input.Write(BitConverter.GetBytes(x));
        input.Write(BitConverter.GetBytes(options.Scale));
        input.Write(BitConverter.GetBytes(options.Softcap));
        input.Write(BitConverter.GetBytes(context));
        input.Write(BitConverter.GetBytes(chunkSize));
        foreach (float x in k) input.Write(BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x)));
        foreach (float x in v) input.Write(BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x)));
        input.Write(MemoryMarshal.AsBytes(q.AsSpan()));
        var got = MemoryMarshal.Cast<byte, float>(Harness.Exec(input, "attention_split")).ToArray();
        Assert.Equal(want.Length, got.Length);
        // The outputs are softmax-weighted averages of values in [-1, 1], summed in float over up to 101 positions in
        // another order than the CPU's: a few float32 roundings of order-1 terms (4e-6) apart, not more. A chunk
        // merged with the wrong max, a lost or doubled chunk, or a NaN read from past the position is far outside.
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) <= 4e-6 + 1e-5 * Math.Abs(want[i]),
                $"head {i / headDim}, element {i % headDim}: split kernel {got[i]}, cpu {want[i]}");
    }

    [Theory]
    [InlineData(1, 32, 128, 1024, 4096, true)]    // 7B: 32 heads over 32 kv heads
    [InlineData(1, 64, 128, 1024, 4096, true)]    // 70B: group 8
    [InlineData(1, 32, 64, 256, 4096, true)]      // group 8 at head dim 64
    [InlineData(1, 64, 64, 256, 4096, false)]     // group 16: more than the kernel holds
    [InlineData(2, 32, 128, 1024, 4096, false)]   // prefill batches keep the one-block-per-(head, token) kernel
    [InlineData(1, 8, 36, 72, 4096, false)]       // head dimension not a multiple of 8
    [InlineData(1, 8, 128, 1024, 128 * 65536, false)] // a chunk grid beyond gridDim.y
    public void SplitAttentionIsUsedWhereTheKernelHoldsTheShape(int tokens, int heads, int headDim, int kvDim, int context, bool expected) =>
        Assert.Equal(expected, CudaLaunchLimits.CanSplitAttention(tokens, heads, headDim, kvDim, context));

    /// <summary>
    /// ptxas (run by NVRTC for a real architecture) reports each kernel's registers and static shared memory: the
    /// launch of <see cref="CudaLaunchLimits.SplitThreads"/> threads must fit one block's 64K registers and 255 per
    /// thread, the shared memory must be the layout the kernel declares (two [8][256] float arrays and two [4][8]; the
    /// one-launch attention_flash_f16 one int more) and under the 48 KiB a static allocation may take, and nothing may
    /// spill to local memory.
    /// </summary>
    [NvrtcTheory]
    [InlineData(CudaProbe.MinArch)]
    [InlineData(87)]
    [InlineData(90)]
    public void PtxasFiguresFitTheLaunchConfiguration(int arch)
    {
        CudaTestEnvironment.RequireNvrtc();
        var k = KernelCompileMemo.CubinWithPtxasFigures("attention.cu", arch);
        var (splitRegs, splitSmem, splitSpill) = Figures(k.Log, "attention_split_f16");
        Assert.True(splitRegs * CudaLaunchLimits.SplitThreads <= 65536, $"sm_{arch}: {splitRegs} registers x {CudaLaunchLimits.SplitThreads} threads");
        Assert.True(splitRegs <= 255);
        Assert.Equal((2 * CudaLaunchLimits.SplitMaxGroup * CudaBackend.MaxHeadDim + 2 * (CudaLaunchLimits.SplitThreads / 32) * CudaLaunchLimits.SplitMaxGroup) * sizeof(float), splitSmem);
        Assert.True(splitSmem <= 48 * 1024);
        Assert.Equal(0, splitSpill);
        var (combineRegs, combineSmem, combineSpill) = Figures(k.Log, "attention_combine_f32");
        Assert.True(combineRegs * 128 <= 65536);
        Assert.Equal(0, combineSmem);
        Assert.Equal(0, combineSpill);
        // the one-launch kernel: the split's layout plus its last-block flag, launched like the split
        var (flashRegs, flashSmem, flashSpill) = Figures(k.Log, "attention_flash_f16");
        Assert.True(flashRegs * CudaLaunchLimits.SplitThreads <= 65536, $"sm_{arch}: {flashRegs} registers x {CudaLaunchLimits.SplitThreads} threads");
        Assert.True(flashRegs <= 255);
        Assert.Equal(splitSmem + sizeof(int), flashSmem);
        Assert.Equal(0, flashSpill);
    }

    /// <summary>Registers, static shared bytes and spill-store bytes of <paramref name="entry"/> in a ptxas -v log.</summary>
    private static (int Registers, int SharedBytes, int SpillStores) Figures(string log, string entry)
    {
        string head = $"Compiling entry function '{entry}'";
        int at = log.IndexOf(head, StringComparison.Ordinal);
        Assert.True(at >= 0, $"no ptxas figures for {entry} in:\n{log}");
        int next = log.IndexOf("Compiling entry function", at + head.Length, StringComparison.Ordinal);
        string part = next < 0 ? log[at..] : log[at..next];
        var regs = Regex.Match(part, @"Used (\d+) registers");
        var spill = Regex.Match(part, @"(\d+) bytes spill stores");
        var smem = Regex.Match(part, @"(\d+) bytes smem");
        Assert.True(regs.Success && spill.Success, $"no register or spill figures for {entry} in:\n{part}");
        return (int.Parse(regs.Groups[1].Value), smem.Success ? int.Parse(smem.Groups[1].Value) : 0, int.Parse(spill.Groups[1].Value));
    }
}
