using System.Runtime.InteropServices;
using EdgeLlm.Backends;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// The loading and launch hygiene of the CUDA backend that can be checked without a GPU: K/V values clamped to
/// fp16's finite range by store_kv_f16 and the device argmax against the CPU sampler (both kernels compiled by
/// the host C++ compiler, HostEmulation), the attention grid checked against CUDA's limits, the
/// EDGELLM_CUDA_SYNC / EDGELLM_CUDA_GRAPHS settings and their error messages, and how the model file is opened
/// for a CUDA device.
/// </summary>
public class CudaKernelHygieneTests
{
    private static MemoryStream Input(string op)
    {
        var s = new MemoryStream();
        s.Write(System.Text.Encoding.ASCII.GetBytes(op));
        s.WriteByte(0);
        return s;
    }

    [HostCompilerFact]
    public void StoreKvClampsToTheFiniteHalfRangeAndKeepsNaN()
    {
        const int kvDim = 8, tokens = 2, start = 3;
        float[] k = [1e6f, -1e6f, 65504f, 65519.9f, 70000f, float.PositiveInfinity, float.NegativeInfinity, float.NaN,
                     0.1f, -2.5f, 6.1e-5f, 3e-8f, 1000.3f, -0f, 12345.678f, -65520f];
        float[] v = k.Select(x => -x).ToArray();
        var input = Input("store_kv");
        input.Write(BitConverter.GetBytes(tokens));
        input.Write(BitConverter.GetBytes(kvDim));
        input.Write(BitConverter.GetBytes(start));
        input.Write(MemoryMarshal.AsBytes(k.AsSpan()));
        input.Write(MemoryMarshal.AsBytes(v.AsSpan()));
        var got = MemoryMarshal.Cast<byte, ushort>(Harness.Exec(input, "store_kv")).ToArray();
        int cache = (start + tokens) * kvDim;
        Assert.Equal(2 * cache, got.Length);
        for (int i = 0; i < start * kvDim; i++)
        {
            Assert.Equal(0xFFFF, got[i]);         // rows before the start position untouched
            Assert.Equal(0xFFFF, got[cache + i]);
        }
        for (int i = 0; i < tokens * kvDim; i++)
        {
            Check(k[i], got[start * kvDim + i], $"k[{i}]");
            Check(v[i], got[cache + start * kvDim + i], $"v[{i}]");
        }

        static void Check(float x, ushort bits, string what)
        {
            var h = BitConverter.UInt16BitsToHalf(bits);
            if (float.IsNaN(x)) { Assert.True(Half.IsNaN(h), $"{what}: NaN stored as {bits:X4}"); return; }
            Assert.True(Half.IsFinite(h), $"{what}: {x} stored as {h}");
            // Within the range: the nearest fp16 (round to nearest even, as .NET converts); beyond it: +-65504.
            var want = Math.Abs(x) > 65504f ? (Half)(Math.Sign(x) * 65504f) : (Half)x;
            Assert.True(BitConverter.HalfToUInt16Bits(want) == bits, $"{what}: {x} stored as {bits:X4} ({h}), want {BitConverter.HalfToUInt16Bits(want):X4} ({want})");
        }
    }

    private static (int Id, bool NonFinite) DeviceArgMax(float[] logits, int threads)
    {
        var input = Input("argmax");
        input.Write(BitConverter.GetBytes(logits.Length));
        input.Write(BitConverter.GetBytes(threads));
        input.Write(MemoryMarshal.AsBytes(logits.AsSpan()));
        var r = MemoryMarshal.Cast<byte, int>(Harness.Exec(input, "argmax")).ToArray();
        Assert.Equal(3, r.Length);
        Assert.True(r[1] is 0 or 1, $"flag {r[1]}");
        Assert.Equal(r[0], r[2]); // the id is also written where the next step's get_rows reads it
        return (r[0], r[1] == 1);
    }

    [HostCompilerTheory]
    [InlineData(32000, 1024, 1)]
    [InlineData(512, 1024, 2)]   // fewer logits than threads
    [InlineData(151936, 256, 3)]
    [InlineData(7, 64, 4)]
    public void DeviceArgMaxPicksTheCpuSamplersGreedyToken(int n, int threads, int seed)
    {
        var rng = new Random(seed);
        var logits = new float[n];
        for (int i = 0; i < n; i++) logits[i] = (float)Math.Round(rng.NextDouble() * 20 - 10, 1); // coarse values: many ties
        var sampler = new Sampler(n, SamplerOptions.Greedy);
        var (id, nonFinite) = DeviceArgMax(logits, threads);
        Assert.False(nonFinite);
        Assert.Equal(sampler.Sample(logits, []), id);
        // A tie of the maximum at a high and a low id: the low one, as the sampler picks.
        logits[n - 1] = 50f;
        logits[n / 2] = 50f;
        Assert.Equal(n / 2, DeviceArgMax(logits, threads).Id);
        Assert.Equal(sampler.Sample(logits, []), n / 2);
    }

    [HostCompilerTheory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void DeviceArgMaxFlagsANonFiniteRow(float bad)
    {
        var logits = Enumerable.Range(0, 5000).Select(i => (float)Math.Sin(i)).ToArray();
        Assert.False(DeviceArgMax(logits, 1024).NonFinite);
        logits[4321] = bad;
        Assert.True(DeviceArgMax(logits, 1024).NonFinite);
        Assert.False(LogitCheck.AllFinite(logits)); // the host check the flag stands in for agrees
    }

    [Fact]
    public void AttentionGridIsCheckedAgainstCudasLimits()
    {
        CudaLaunchLimits.CheckAttentionGrid(64, 1);
        CudaLaunchLimits.CheckAttentionGrid(128, CudaLaunchLimits.MaxGridY);
        var e = Assert.Throws<EdgeLlmException>(() => CudaLaunchLimits.CheckAttentionGrid(32, 65536));
        Assert.Contains("65536 tokens", e.Message);
        Assert.Contains("65535", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        Assert.Throws<EdgeLlmException>(() => CudaLaunchLimits.CheckAttentionGrid(0, 1));
    }

    [Theory]
    [InlineData(null, null, null, true, false, true)]
    [InlineData("0", null, null, false, false, true)]
    [InlineData("1", null, null, true, false, true)]
    [InlineData(null, "1", null, false, true, true)]  // synchronizing after each launch rules out graphs
    [InlineData("1", "1", null, false, true, true)]
    [InlineData(null, "0", null, true, false, true)]
    [InlineData(null, "yes", null, true, false, true)] // only "1" switches it on
    [InlineData(null, null, "0", true, false, false)]  // decode attention back on the one-block-per-head kernel
    [InlineData(null, null, "1", true, false, true)]
    public void SettingsComeFromTheEnvironment(string? graphs, string? sync, string? split, bool graphsOn, bool syncOn, bool splitOn)
    {
        var s = CudaSettings.From(name => name switch
        {
            CudaSettings.GraphsVariable => graphs,
            CudaSettings.SyncVariable => sync,
            CudaSettings.SplitAttentionVariable => split,
            CudaSettings.FuseVariable or CudaSettings.ProfileVariable => null, // CudaFusion/CudaProfileTests
            _ => throw new ArgumentException(name),
        });
        Assert.Equal(graphsOn, s.Graphs);
        Assert.Equal(syncOn, s.SyncEachLaunch);
        Assert.Equal(splitOn, s.SplitAttention);
    }

    [Fact]
    public void AFaultingKernelIsNamed()
    {
        var e = CudaLaunchLimits.KernelFault("attention_f16", 700);
        Assert.Equal("kernel attention_f16", e.Call);
        Assert.Equal(700, e.Code);
        Assert.StartsWith("kernel attention_f16 failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        // Without EDGELLM_CUDA_SYNC, the fault shows at the next synchronization, which says how to name the kernel.
        Assert.Contains("EDGELLM_CUDA_SYNC=1", CudaLaunchLimits.SyncFault("cuStreamSynchronize", 700, syncEachLaunch: false).Message);
        Assert.DoesNotContain("EDGELLM_CUDA_SYNC", CudaLaunchLimits.SyncFault("cuStreamSynchronize", 700, syncEachLaunch: true).Message);
    }

    [Theory]
    [InlineData("cuda", GgufLoadMode.Auto, GgufLoadMode.Map)]   // a read-in copy would stay on the host after the upload
    [InlineData("cuda:1", GgufLoadMode.Auto, GgufLoadMode.Map)]
    [InlineData("cuda", GgufLoadMode.Read, GgufLoadMode.Read)]  // asked for explicitly
    [InlineData("cuda", GgufLoadMode.Map, GgufLoadMode.Map)]
    [InlineData("cpu", GgufLoadMode.Auto, GgufLoadMode.Auto)]
    [InlineData("auto", GgufLoadMode.Auto, GgufLoadMode.Auto)]  // the device is not known until the probe
    public void ACudaDeviceMapsTheFileInsteadOfReadingItIn(string device, GgufLoadMode asked, GgufLoadMode used)
    {
        var load = new GgufLoadOptions { Mode = asked, LockInMemory = true };
        var got = CudaFileLoading.For(DeviceSpec.Parse(device), load);
        Assert.Equal(used, got.Mode);
        Assert.True(got.LockInMemory);
    }
}
