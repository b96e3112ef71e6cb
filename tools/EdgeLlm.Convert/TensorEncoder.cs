using System.IO.Hashing;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Convert;

/// <summary>
/// Streams one source tensor into GGUF bytes of a target type: reads a chunk of rows (bounded by
/// <see cref="ChunkFloats"/>), converts and quantizes it in parallel (each worker reads and quantizes its own
/// slice of rows with the reference quantizers, so the bytes are llama.cpp's), then writes and hashes the chunk
/// in order. Memory stays at two chunk buffers whatever the model size. A GGUF source tensor already in the
/// target type is copied byte for byte.
/// </summary>
internal sealed unsafe class TensorEncoder(int threads, long chunkFloats = TensorEncoder.DefaultChunkFloats)
{
    /// <summary>4 Mi floats: a 16 MiB input buffer and at most as much output per chunk.</summary>
    public const long DefaultChunkFloats = 4L << 20;

    private float[] _in = [];
    private byte[] _out = [];

    public long ChunkFloats { get; } = Math.Max(1, chunkFloats);

    /// <summary>Bytes of input a tensor represents (its stored size in the source), for progress.</summary>
    public static long InputBytes(SourceTensor t) => t is GgufSourceTensor g ? g.RawLength : t.Rows * t.RowLength * MappedTensor.ElementBytes(t.DType);

    /// <param name="progress">Called after each chunk with the input bytes it covered.</param>
    public void Encode(SourceTensor t, GgmlType type, Stream dst, XxHash64 hash, Action<long> progress, CancellationToken ct)
    {
        long ne0 = t.Shape[^1];
        long rowBytes = GgmlTypes.RowBytes(type, ne0);
        long inputTotal = InputBytes(t);
        if (t is GgufSourceTensor g && g.RawType == type)
        {
            CopyRaw(g, dst, hash, progress, ct);
            return;
        }
        // Rows of the source are RowLength elements; a 1-D tensor (RowLength 1) is read as one ggml row at once.
        long rowLen = t.RowLength;
        long rowsPerChunk = t.Shape.Length == 1 ? t.Rows : Math.Clamp(ChunkFloats / rowLen, 1, t.Rows);
        long ggmlRowsPerRow = t.Shape.Length == 1 ? 0 : rowLen / ne0;
        EnsureBuffers(rowsPerChunk * rowLen, (t.Shape.Length == 1 ? 1 : rowsPerChunk * ggmlRowsPerRow) * rowBytes);
        for (long r0 = 0; r0 < t.Rows; r0 += rowsPerChunk)
        {
            ct.ThrowIfCancellationRequested();
            int count = (int)Math.Min(rowsPerChunk, t.Rows - r0);
            long floats = count * rowLen;
            long ggmlRows = floats / ne0;
            int pieces = (int)Math.Min(count, Math.Max(1, threads) * 4L);
            if (t.Shape.Length == 1) pieces = 1;
            var inBuf = _in;
            var outBuf = _out;
            try
            {
                Parallel.For(0, pieces, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads), CancellationToken = ct }, p =>
                {
                    int a = (int)((long)count * p / pieces), b = (int)((long)count * (p + 1) / pieces);
                    if (b == a) return;
                    t.ReadRows(r0 + a, b - a, inBuf.AsSpan((int)(a * rowLen), (int)((b - a) * rowLen)));
                    long g0 = t.Shape.Length == 1 ? 0 : a * ggmlRowsPerRow, g1 = t.Shape.Length == 1 ? 1 : b * ggmlRowsPerRow;
                    fixed (float* src = inBuf) fixed (byte* o = outBuf)
                    {
                        for (long gr = g0; gr < g1; gr++)
                            QuantRef.QuantizeRow(type, src + gr * ne0, o + gr * rowBytes, ne0);
                    }
                });
            }
            catch (AggregateException e) when (e.InnerExceptions.Count >= 1)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            }
            int n = checked((int)(ggmlRows * rowBytes));
            dst.Write(outBuf, 0, n);
            hash.Append(outBuf.AsSpan(0, n));
            progress(inputTotal * count / t.Rows);
        }
    }

    private void CopyRaw(GgufSourceTensor g, Stream dst, XxHash64 hash, Action<long> progress, CancellationToken ct)
    {
        long piece = ChunkFloats * 4;
        for (long at = 0; at < g.RawLength; at += piece)
        {
            ct.ThrowIfCancellationRequested();
            var span = new ReadOnlySpan<byte>(g.RawBytes + at, (int)Math.Min(piece, g.RawLength - at));
            dst.Write(span);
            hash.Append(span);
            progress(span.Length);
        }
    }

    private void EnsureBuffers(long floats, long bytes)
    {
        if (_in.LongLength < floats) _in = new float[floats];
        if (_out.LongLength < bytes) _out = new byte[bytes];
    }
}
