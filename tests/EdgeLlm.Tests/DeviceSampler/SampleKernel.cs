using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.DeviceSampler;

/// <summary>
/// kernels/sample.cu's sample_f32 run by the host emulation harness (tests/EdgeLlm.Tests/Cuda/HostEmulation): one
/// emulated block per case, its threads as OS threads with real barriers and warp shuffles, its arguments as
/// CudaBackend.Sample passes them (settings from <see cref="DeviceSampling.Settings"/>; the uniform and the pairs from a
/// <see cref="PenaltyWindow"/> in the sample state block <see cref="CudaSampleState"/> writes).
/// </summary>
internal static class SampleKernel
{
    public sealed record Case(float[] Logits, DeviceSamplerSettings Settings, int[] Penalties, double Uniform, int Threads = 128);

    public readonly record struct Result(int Token, bool NonFinite, int Fed);

    public static Result[] Run(IReadOnlyList<Case> cases)
    {
        var input = new MemoryStream();
        input.Write("sample\0"u8);
        foreach (var c in cases)
        {
            var s = c.Settings;
            // the state block exactly as CudaBackend.Sample uploads it
            var state = new byte[CudaSampleState.Bytes(c.Penalties.Length / 2)];
            Assert.Equal(state.Length, CudaSampleState.Write(state, c.Uniform, c.Penalties));
            foreach (int v in new[] { c.Logits.Length, c.Threads, state.Length }) input.Write(BitConverter.GetBytes(v));
            foreach (float v in new[] { s.RepeatPenalty, s.PresencePenalty, s.FrequencyPenalty, s.Temperature, s.InvTemperature })
                input.Write(BitConverter.GetBytes(v));
            input.Write(BitConverter.GetBytes(s.TopK));
            foreach (float v in new[] { s.TopP, s.MinP, s.LogMinP }) input.Write(BitConverter.GetBytes(v));
            input.Write(state);
            input.Write(MemoryMarshal.AsBytes(c.Logits.AsSpan()));
        }
        var r = MemoryMarshal.Cast<byte, int>(Harness.Exec(input, "sample")).ToArray();
        Assert.Equal(3 * cases.Count, r.Length);
        var results = new Result[cases.Count];
        for (int i = 0; i < cases.Count; i++)
        {
            Assert.True(r[3 * i + 1] is 0 or 1, $"case {i}: flag {r[3 * i + 1]}");
            results[i] = new Result(r[3 * i], r[3 * i + 1] == 1, r[3 * i + 2]);
        }
        return results;
    }
}
