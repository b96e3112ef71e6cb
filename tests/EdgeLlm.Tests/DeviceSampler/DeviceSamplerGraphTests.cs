using System.Buffers.Binary;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Generation;

namespace EdgeLlm.Tests.DeviceSampler;

/// <summary>
/// What lets the token pick live inside the captured decode graph without a GPU to show it: the per-token values go
/// through the sample state block (its bytes as sample_f32 reads them), and a recorded pick compares equal from one
/// token to the next as long as the settings and buffers are the same (so <see cref="CudaOp.SameLaunch"/> replays the
/// graph), and the planner launches it as argmax_f32 / sample_f32 at the end of the step.
/// </summary>
public class DeviceSamplerGraphTests
{
    [Fact]
    public void TheStateBlockHoldsTheUniformTheCountAndThePairsWhereTheKernelReadsThem()
    {
        int[] pairs = [17, 2, 40000, 1, 3, 5];
        var block = new byte[CudaSampleState.Bytes(3) + 8];
        block.AsSpan().Fill(0xAB);
        Assert.Equal(16 + 24, CudaSampleState.Write(block, 0.1234567890123, pairs));
        Assert.Equal(0.1234567890123, BinaryPrimitives.ReadDoubleLittleEndian(block));                // *(const double*)state
        Assert.Equal(3, BinaryPrimitives.ReadInt32LittleEndian(block.AsSpan(8)));                      // ((const int*)state)[2]
        Assert.Equal(0, BinaryPrimitives.ReadInt32LittleEndian(block.AsSpan(12)));
        for (int i = 0; i < pairs.Length; i++)                                                        // state + SAMPLE_STATE_PAIRS
            Assert.Equal(pairs[i], BinaryPrimitives.ReadInt32LittleEndian(block.AsSpan(CudaSampleState.HeaderBytes + 4 * i)));
        Assert.Equal(0xAB, block[40]); // nothing written past the pairs
        Assert.Equal(16, CudaSampleState.Write(block, 0.5, []));
        Assert.Equal(0, BinaryPrimitives.ReadInt32LittleEndian(block.AsSpan(8)));
        Assert.Throws<ArgumentException>(() => CudaSampleState.Write(block, 0.5, [1, 2, 3]));                  // not pairs
        Assert.Throws<ArgumentException>(() => CudaSampleState.Write(new byte[23], 0.5, [1, 2]));              // 24 bytes needed
    }

    [Fact]
    public void APickOfTheNextTokenIsTheSameLaunchWhileTheSettingsAndBuffersAre()
    {
        var logits = new CudaBuffer(32000, 0x10_0000, 4);
        var settings = DeviceSampling.Settings(new SamplerOptions { Temperature = 0.8f, RepeatPenalty = 1.1f });
        CudaOp Pick(CudaSampleLaunch launch, long offset = 0) =>
            new() { Kind = CudaOpKind.Sample, X = logits, SrcOffset = offset, Count = 32000, Pick = launch };
        // Two tokens of one generation: the backend records the same values (a fresh record when it had to make one).
        var a = Pick(new CudaSampleLaunch(settings, 0x20_0000, 32768, 0x30_0000, 0x40_0000, 0x50_0004));
        var b = Pick(new CudaSampleLaunch(settings, 0x20_0000, 32768, 0x30_0000, 0x40_0000, 0x50_0004));
        Assert.True(a.SameLaunch(in b));
        // Anything the kernel takes as an argument makes it another launch (another graph).
        Assert.False(a.SameLaunch(Pick(new CudaSampleLaunch(settings with { TopK = 41 }, 0x20_0000, 32768, 0x30_0000, 0x40_0000, 0x50_0004))));
        Assert.False(a.SameLaunch(Pick(new CudaSampleLaunch(settings with { Temperature = 0.9f }, 0x20_0000, 32768, 0x30_0000, 0x40_0000, 0x50_0004))));
        Assert.False(a.SameLaunch(Pick(new CudaSampleLaunch(settings, 0x20_0000, 65536, 0x30_0000, 0x40_0000, 0x50_0004))));
        Assert.False(a.SameLaunch(Pick(new CudaSampleLaunch(settings, 0x20_0000, 32768, 0x31_0000, 0x40_0000, 0x50_0004))));
        Assert.False(a.SameLaunch(Pick(new CudaSampleLaunch(settings, 0x20_0000, 32768, 0x30_0000, 0x40_0000, 0x50_0004), offset: 32000)));
        var argmax = new CudaOp { Kind = CudaOpKind.ArgMax, X = logits, Count = 32000, Pick = new CudaSampleLaunch(null, 0, 0, 0, 0x40_0000, 0x50_0004) };
        Assert.False(a.SameLaunch(in argmax));
        Assert.True(argmax.SameLaunch(argmax with { Pick = new CudaSampleLaunch(null, 0, 0, 0, 0x40_0000, 0x50_0004) }));

        // The planner launches each pick as its own kernel, named for the profile.
        var plan = new List<CudaLaunch>();
        CudaOp[] step = [a];
        CudaLaunchPlanner.Plan(step, plan, fuse: true);
        Assert.Equal([LaunchKind.Sample], plan.Select(l => l.Kind));
        Assert.Equal(["sample_f32"], CudaLaunchPlanner.KernelNames(plan[0], step));
        step = [argmax];
        CudaLaunchPlanner.Plan(step, plan, fuse: false);
        Assert.Equal(["argmax_f32"], CudaLaunchPlanner.KernelNames(plan.Single(), step));
    }
}
