using EdgeLlm.Backends.Split;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Offload;

/// <summary>The planner's choices for simulated device memory sizes.</summary>
public class OffloadPlannerTests
{
    private const long MiB = 1L << 20;

    // 10 layers of 100 MiB weights + 20 MiB KV each, output 50 MiB, scratch 30 MiB, margin 64 MiB.
    private static OffloadInputs Inputs(long free, bool integrated = false) => new()
    {
        FreeBytes = free,
        MarginBytes = 64 * MiB,
        LayerWeightBytes = Enumerable.Repeat(100 * MiB, 10).ToArray(),
        KvBytesPerLayer = 20 * MiB,
        OutputBytes = 50 * MiB,
        ScratchBytes = 30 * MiB,
        Integrated = integrated,
    };

    [Theory]
    // free = margin + output + scratch + n * 120 MiB (+ slack below the next layer) -> n layers.
    [InlineData(64 + 50 + 30 + 10 * 120, 0, 10)]       // exactly everything
    [InlineData(64 + 50 + 30 + 10 * 120, -1, 9)]       // one byte short of everything
    [InlineData(64 + 50 + 30 + 4 * 120 + 119, 0, 4)]
    [InlineData(64 + 50 + 30 + 1 * 120, 0, 1)]
    [InlineData(64 + 50 + 30 + 119, 0, 0)]             // output and scratch fit, not one layer
    [InlineData(100, 0, 0)]                            // less than the margin
    [InlineData(100_000, 0, 10)]
    public void Auto_FillsFreeMemory(long freeMiB, long extraBytes, int expected)
    {
        var plan = OffloadPlanner.Plan(GpuLayersRequest.AutoFit, Inputs(freeMiB * MiB + extraBytes));
        Assert.Equal(expected, plan.GpuLayers);
        Assert.Equal(10, plan.LayerCount);
        Assert.Equal(expected == 0 ? 0 : (50 + 30 + expected * 120) * MiB, plan.DeviceBytes);
        Assert.StartsWith("auto:", plan.Reason);
    }

    [Fact]
    public void Auto_UnevenLayers_CountsFromTheEnd()
    {
        // The last layers are offloaded first: 400 MiB for the last, 10 MiB for the others.
        var m = Inputs(0) with { LayerWeightBytes = [10 * MiB, 10 * MiB, 10 * MiB, 400 * MiB], KvBytesPerLayer = 0, OutputBytes = 0, ScratchBytes = 0, MarginBytes = 0 };
        Assert.Equal(0, OffloadPlanner.Plan(GpuLayersRequest.AutoFit, m with { FreeBytes = 399 * MiB }).GpuLayers);
        Assert.Equal(1, OffloadPlanner.Plan(GpuLayersRequest.AutoFit, m with { FreeBytes = 409 * MiB }).GpuLayers);
        Assert.Equal(2, OffloadPlanner.Plan(GpuLayersRequest.AutoFit, m with { FreeBytes = 410 * MiB }).GpuLayers);
        Assert.Equal(4, OffloadPlanner.Plan(GpuLayersRequest.AutoFit, m with { FreeBytes = 430 * MiB }).GpuLayers);
    }

    [Fact]
    public void Integrated_AutoMeansAll()
    {
        var plan = OffloadPlanner.Plan(GpuLayersRequest.AutoFit, Inputs(10 * MiB, integrated: true));
        Assert.True(plan.AllOnGpu);
        Assert.Contains("integrated", plan.Reason);
    }

    [Fact]
    public void ExplicitCounts_AreHonoured_AndCapped()
    {
        Assert.Equal(3, OffloadPlanner.Plan(new GpuLayersRequest(false, 3), Inputs(10 * MiB)).GpuLayers);
        Assert.Equal(0, OffloadPlanner.Plan(new GpuLayersRequest(false, 0), Inputs(100_000 * MiB)).GpuLayers);
        Assert.Equal(10, OffloadPlanner.Plan(new GpuLayersRequest(false, 999), Inputs(10 * MiB)).GpuLayers);
        Assert.Equal(10, OffloadPlanner.Plan(GpuLayersRequest.All, Inputs(10 * MiB)).GpuLayers);
    }

    [Theory]
    [InlineData("auto", true, 0)]
    [InlineData("AUTO", true, 0)]
    [InlineData("all", false, int.MaxValue)]
    [InlineData("0", false, 0)]
    [InlineData(" 12 ", false, 12)]
    public void Parse_Accepts(string text, bool auto, int count)
    {
        Assert.True(GpuLayersRequest.TryParse(text, out var r));
        Assert.Equal(auto, r.Auto);
        if (!auto) Assert.Equal(count, r.Count);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("half")]
    [InlineData("1.5")]
    [InlineData("")]
    public void Parse_Refuses(string text) => Assert.False(GpuLayersRequest.TryParse(text, out _));

    [Fact]
    public void Measure_ReadsTheTensorTable()
    {
        // stories260K: 5 layers, dim 64, kv dim 32.
        using var file = GgufFile.Open(TestPaths.Stories260K);
        var c = LlamaConfig.FromGguf(file);
        var m = OffloadPlanner.Measure(file, c, contextSize: 128, maxBatch: 8, freeBytes: 1 << 30, integrated: false);
        Assert.Equal(c.LayerCount, m.LayerWeightBytes.Length);
        long expectedLayer0 = file.Tensors.Where(t => t.Name.StartsWith("blk.0.", StringComparison.Ordinal)).Sum(t => t.ByteSize);
        Assert.Equal(expectedLayer0, m.LayerWeightBytes[0]);
        Assert.Equal(file.Tensors.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal)).Sum(t => t.ByteSize), m.LayerWeightBytes.Sum());
        Assert.Equal(2L * 128 * c.KvDim * 2, m.KvBytesPerLayer);
        // stories260K has its own output.weight: the output layer is the output norm and that matrix.
        Assert.Contains(file.Tensors, t => t.Name == "output.weight");
        Assert.Equal(file.Tensors.Where(t => t.Name is "output_norm.weight" or "output.weight").Sum(t => t.ByteSize), m.OutputBytes);

        // Gemma ties the output projection to the embedding table: the device needs a copy of the table instead.
        using var tied = GgufFile.Open(Path.Combine(TestPaths.Data("models-visible"), "gemma.gguf"));
        var g = OffloadPlanner.Measure(tied, LlamaConfig.FromGguf(tied), contextSize: 64, maxBatch: 8, freeBytes: 1 << 30, integrated: false);
        Assert.DoesNotContain(tied.Tensors, t => t.Name == "output.weight");
        Assert.Equal(tied.Tensors.Where(t => t.Name is "output_norm.weight" or "token_embd.weight").Sum(t => t.ByteSize), g.OutputBytes);
    }
}
