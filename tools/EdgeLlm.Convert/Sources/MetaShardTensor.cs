using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Convert.Sources;

/// <summary>One shard's slice of a tensor: a contiguous run of elements inside a zip entry.</summary>
internal sealed record ShardSlice(ZipArchiveReader Zip, ZipEntry Entry, long ByteOffset, long[] Shape, SourceDType DType)
{
    public long Rows => Shape[0];

    public long RowLength { get { long n = 1; for (int i = 1; i < Shape.Length; i++) n *= Shape[i]; return n; } }
}

/// <summary>
/// A tensor merged from model-parallel slices while it is read: <c>parts[s]</c> holds rows
/// [s·R, (s+1)·R) (a column-parallel split, or a single replicated/unsplit part) or, when
/// <see cref="ConcatColumns"/>, columns [s·C, (s+1)·C) of every row (a row-parallel split). Reads go through
/// a per-thread buffer of at most <see cref="ChunkBytes"/> (or one slice row), so memory stays bounded.
/// </summary>
internal sealed class MergedTensor(ShardSlice[] parts, bool concatColumns) : SourceTensor
{
    public const int ChunkBytes = 1 << 20;

    [ThreadStatic] private static byte[]? t_buffer;

    public required string MetaName { get; init; }
    public bool ConcatColumns { get; } = concatColumns;

    public override void ReadRows(long row, int count, Span<float> dst)
    {
        long rowLength = RowLength;
        if (row < 0 || count < 0 || row > Rows - count)
            throw new ArgumentOutOfRangeException(nameof(row), $"{Name}: rows [{row}, {row + count}) are outside [0, {Rows})");
        if (dst.Length < count * rowLength)
            throw new ArgumentException($"{Name}: destination holds {dst.Length} floats, {count} rows need {count * rowLength}", nameof(dst));
        if (ConcatColumns) ReadColumnSplit(row, count, rowLength, dst);
        else ReadRowSplit(row, count, rowLength, dst);
    }

    private void ReadRowSplit(long row, int count, long rowLength, Span<float> dst)
    {
        long partRows = parts[0].Rows;
        long done = 0;
        while (done < count)
        {
            long r = row + done;
            var part = parts[r / partRows];
            long local = r % partRows;
            long n = Math.Min(count - done, partRows - local);
            Read(part, local * rowLength, n * rowLength, dst.Slice((int)(done * rowLength), (int)(n * rowLength)));
            done += n;
        }
    }

    private void ReadColumnSplit(long row, int count, long rowLength, Span<float> dst)
    {
        long cols = parts[0].RowLength; // columns per shard
        int esize = MetaPthSource.ElementBytes(DType);
        long rowsPerChunk = Math.Max(1, ChunkBytes / (cols * esize));
        var buffer = Buffer(rowsPerChunk * cols * esize);
        for (long r0 = 0; r0 < count; r0 += rowsPerChunk)
        {
            long n = Math.Min(rowsPerChunk, count - r0);
            for (int s = 0; s < parts.Length; s++)
            {
                var part = parts[s];
                var bytes = buffer.AsSpan(0, (int)(n * cols * esize));
                part.Zip.Read(part.Entry, part.ByteOffset + (row + r0) * cols * esize, bytes);
                for (long i = 0; i < n; i++)
                {
                    var src = bytes.Slice((int)(i * cols * esize), (int)(cols * esize));
                    Convert(DType, src, dst.Slice((int)((r0 + i) * rowLength + s * cols), (int)cols));
                }
            }
        }
    }

    /// <summary>Reads elements [first, first + count) of a slice as float32, a buffer at a time.</summary>
    private void Read(ShardSlice part, long first, long count, Span<float> dst)
    {
        int esize = MetaPthSource.ElementBytes(DType);
        var buffer = Buffer(ChunkBytes);
        long perChunk = ChunkBytes / esize;
        for (long done = 0; done < count;)
        {
            long n = Math.Min(perChunk, count - done);
            var bytes = buffer.AsSpan(0, (int)(n * esize));
            part.Zip.Read(part.Entry, part.ByteOffset + (first + done) * esize, bytes);
            Convert(DType, bytes, dst.Slice((int)done, (int)n));
            done += n;
        }
    }

    private static byte[] Buffer(long bytes)
    {
        var b = t_buffer;
        if (b is null || b.Length < bytes) t_buffer = b = new byte[Math.Max(bytes, ChunkBytes)];
        return b;
    }

    /// <summary>Widens bf16/f16 (or copies f32) little-endian elements to float32.</summary>
    internal static void Convert(SourceDType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case SourceDType.F32:
                MemoryMarshal.Cast<byte, float>(src).CopyTo(dst);
                break;
            case SourceDType.BF16:
            {
                var s = MemoryMarshal.Cast<byte, ushort>(src);
                var d = MemoryMarshal.Cast<float, uint>(dst);
                int i = 0;
                if (Vector128.IsHardwareAccelerated)
                {
                    for (; i + 8 <= s.Length; i += 8)
                    {
                        var (lo, hi) = Vector128.Widen(Vector128.Create(s.Slice(i, 8)));
                        (lo << 16).CopyTo(d.Slice(i, 4));
                        (hi << 16).CopyTo(d.Slice(i + 4, 4));
                    }
                }
                for (; i < s.Length; i++) d[i] = (uint)s[i] << 16;
                break;
            }
            case SourceDType.F16:
            {
                var s = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < s.Length; i++) dst[i] = (float)s[i];
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(type));
        }
    }
}
