using System.Runtime.CompilerServices;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// A tensor stored row-major (PyTorch order) as F32, F16 or BF16 in a mapped file. When <see cref="RopeHeads"/>
/// is set, its rows are in Hugging Face rotate-half order and <see cref="ReadRows"/> returns them in Meta's
/// adjacent-pair order (see <see cref="RopePermutation"/>). Reads are unaligned-safe and thread-safe.
/// </summary>
internal sealed unsafe class MappedTensor : SourceTensor
{
    /// <summary>Keeps the mapping alive and names the file in messages.</summary>
    public required MappedFile File { get; init; }

    /// <summary>Byte offset of element 0 in the file.</summary>
    public required long Offset { get; init; }

    /// <summary>Heads to un-permute q/k rows over (0: no permutation).</summary>
    public int RopeHeads { get; init; }

    /// <summary>Added to every element as it is read (Gemma's norm weights are stored as w, used as 1 + w).</summary>
    public float Shift { get; init; }

    public static int ElementBytes(SourceDType t) => t == SourceDType.F32 ? 4 : 2;

    public long ByteLength => Rows * RowLength * ElementBytes(DType);

    public override void ReadRows(long row, int count, Span<float> dst)
    {
        long n = RowLength;
        SourceChecks.Rows(this, row, count, dst.Length);
        if (File.Base == null) throw new ObjectDisposedException(File.Path);
        int eb = ElementBytes(DType);
        var all = dst[..checked((int)(count * n))];
        if (RopeHeads == 0)
        {
            Convert(File.Base + Offset + row * n * eb, all, DType);
            File.Release(Offset + row * n * eb, count * n * eb);
        }
        else
        {
            for (int i = 0; i < count; i++)
            {
                long src = RopePermutation.SourceRow(row + i, Rows, RopeHeads);
                Convert(File.Base + Offset + src * n * eb, dst.Slice((int)(i * n), (int)n), DType);
                File.Release(Offset + src * n * eb, n * eb);
            }
        }
        if (Shift != 0)
            for (int i = 0; i < all.Length; i++) all[i] += Shift;
    }

    /// <summary>Converts dst.Length elements of the given type at p to float32.</summary>
    public static void Convert(byte* p, Span<float> dst, SourceDType type)
    {
        switch (type)
        {
            case SourceDType.F32:
                fixed (float* d = dst) Buffer.MemoryCopy(p, d, (long)dst.Length * 4, (long)dst.Length * 4);
                break;
            case SourceDType.F16:
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(Unsafe.ReadUnaligned<ushort>(p + 2L * i));
                break;
            case SourceDType.BF16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)Unsafe.ReadUnaligned<ushort>(p + 2L * i) << 16);
                break;
            default:
                throw new NotSupportedException(type.ToString());
        }
    }
}

/// <summary>A small tensor held in memory (e.g. computed rope frequency factors).</summary>
internal sealed class ArrayTensor : SourceTensor
{
    public required float[] Data { get; init; }

    public override void ReadRows(long row, int count, Span<float> dst)
    {
        SourceChecks.Rows(this, row, count, dst.Length);
        Data.AsSpan((int)(row * RowLength), (int)(count * RowLength)).CopyTo(dst);
    }
}

/// <summary>
/// Hugging Face stores q_proj/k_proj rows in rotate-half order: per head, row (j, i) (j in {0,1}, i &lt;
/// head_dim/2) holds what Meta (and llama.cpp) keep at row (i, j). Undoing it, as llama.cpp's converter does
/// with <c>permute(w, n_head)</c>: output row h*hd + 2i + j comes from input row h*hd + j*hd/2 + i. For k_proj
/// the head count is the number of KV heads.
/// </summary>
internal static class RopePermutation
{
    public static long SourceRow(long row, long rows, int heads)
    {
        long hd = rows / heads;
        long h = row / hd, r = row % hd;
        return h * hd + (r & 1) * (hd / 2) + (r >> 1);
    }
}

/// <summary>Argument checks shared by every <see cref="SourceTensor.ReadRows"/>.</summary>
internal static class SourceChecks
{
    public static void Rows(SourceTensor t, long row, int count, int dstLength)
    {
        if (row < 0 || count < 0 || row + count > t.Rows)
            throw new ArgumentOutOfRangeException(nameof(row), $"{t.Name}: rows [{row}, {row + count}) outside [0, {t.Rows})");
        if (dstLength < count * t.RowLength)
            throw new ArgumentException($"{t.Name}: destination holds {dstLength} floats, {count * t.RowLength} needed");
    }
}
