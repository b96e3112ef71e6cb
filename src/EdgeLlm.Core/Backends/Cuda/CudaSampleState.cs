using System.Buffers.Binary;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// The sample state block that sample_f32 (kernels/sample.cu) reads the per-token values from: the draw's uniform
/// (bytes 0..8, a double), the number of penalty pairs (bytes 8..12; 12..16 zero), then the (id, count) int pairs of
/// the penalty window. The host writes it before each decode step's graph launch, so the sampler's kernel arguments,
/// and with them the captured graph, are the same every step.
/// </summary>
internal static class CudaSampleState
{
    /// <summary>Bytes before the pairs (SAMPLE_STATE_PAIRS in sample.cu).</summary>
    public const int HeaderBytes = 16;

    /// <summary>Bytes of a block with <paramref name="pairs"/> (id, count) pairs.</summary>
    public static long Bytes(int pairs) => HeaderBytes + 8L * pairs;

    /// <summary>
    /// Writes the block for <paramref name="uniform"/> and the interleaved (id, count) <paramref name="pairs"/> into
    /// <paramref name="dst"/> (little-endian, as the device reads it); returns the bytes written.
    /// </summary>
    public static int Write(Span<byte> dst, double uniform, ReadOnlySpan<int> pairs)
    {
        if ((pairs.Length & 1) != 0) throw new ArgumentException($"{pairs.Length} penalty entries are not (id, count) pairs", nameof(pairs));
        long bytes = Bytes(pairs.Length / 2);
        if (bytes > dst.Length) throw new ArgumentException($"the sample state of {pairs.Length / 2} pairs needs {bytes} bytes, the buffer holds {dst.Length}", nameof(dst));
        BinaryPrimitives.WriteDoubleLittleEndian(dst, uniform);
        BinaryPrimitives.WriteInt32LittleEndian(dst[8..], pairs.Length / 2);
        BinaryPrimitives.WriteInt32LittleEndian(dst[12..], 0);
        for (int i = 0; i < pairs.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(dst[(HeaderBytes + 4 * i)..], pairs[i]);
        return (int)bytes;
    }
}
