using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// KV-cache rows in their stored type (<see cref="KvCacheType"/>): rows written from float32 at store time (f16 rounded
/// to nearest even, q8_0 quantized per block of 32 like ggml's <c>quantize_row_q8_0_ref</c>), and slices of rows read
/// back to float32 for the attention tiles: fp16 through <see cref="Fp16"/>'s vector conversion (512/256/128-bit
/// ladder), q8_0 whole blocks widened int8 → int32 → float and scaled by the block's fp16 d in 256/128-bit vectors
/// (a slice that is a fraction of a block, heads narrower than 32, is read element by element).
/// </summary>
internal static unsafe class KvRows
{
    /// <summary>Stores <paramref name="rows"/> float32 rows of kvDim values as <paramref name="type"/> rows of rowBytes.</summary>
    public static void Store(KvCacheType type, float* src, byte* dst, int rows, int kvDim)
    {
        long rowBytes = KvCacheTypes.RowBytes(type, kvDim);
        for (int r = 0; r < rows; r++)
        {
            float* s = src + (long)r * kvDim;
            byte* d = dst + r * rowBytes;
            switch (type)
            {
                case KvCacheType.F32: Buffer.MemoryCopy(s, d, rowBytes, rowBytes); break;
                case KvCacheType.F16:
                    for (int i = 0; i < kvDim; i++) ((ushort*)d)[i] = BitConverter.HalfToUInt16Bits((Half)s[i]);
                    break;
                default: Quant.Q8_0.Quantize(s, d, kvDim); break;
            }
        }
    }

    /// <summary>
    /// dst[r · count + i] = value (offset + i) of row r (row r at src + r · rowBytes), for r &lt; rows, i &lt; count.
    /// For q8_0, offset and count either cover whole blocks or lie inside one block. <paramref name="width"/> caps the
    /// vectors used (16, 8, 4 floats or 1 = scalar; 0 = the widest the hardware accelerates), so tests reach every
    /// rung; every rung gives the same bits (both conversions are exact).
    /// </summary>
    public static void Read(KvCacheType type, byte* src, long rowBytes, int offset, int count, int rows, float* dst, int width = 0)
    {
        if (width == 0) width = 16;
        switch (type)
        {
            case KvCacheType.F32:
                for (int r = 0; r < rows; r++)
                    Buffer.MemoryCopy(src + r * rowBytes + 4L * offset, dst + (long)r * count, 4L * count, 4L * count);
                break;
            case KvCacheType.F16:
                for (int r = 0; r < rows; r++) F16(src + r * rowBytes + 2L * offset, dst + (long)r * count, count, width);
                break;
            default:
                if (offset % KvCacheTypes.Q8Block == 0 && count % KvCacheTypes.Q8Block == 0)
                {
                    byte* first = src + (long)offset / KvCacheTypes.Q8Block * KvCacheTypes.Q8BlockBytes;
                    for (int r = 0; r < rows; r++) Q8Blocks(first + r * rowBytes, dst + (long)r * count, count / KvCacheTypes.Q8Block, width);
                }
                else
                {
                    byte* block = src + (long)offset / KvCacheTypes.Q8Block * KvCacheTypes.Q8BlockBytes;
                    int at = offset % KvCacheTypes.Q8Block;
                    for (int r = 0; r < rows; r++)
                    {
                        byte* b = block + r * rowBytes;
                        float d = Fp16.Read(b);
                        sbyte* q = (sbyte*)(b + 2) + at;
                        float* o = dst + (long)r * count;
                        for (int i = 0; i < count; i++) o[i] = d * q[i];
                    }
                }
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void F16(byte* src, float* dst, int n, int width)
    {
        ushort* h = (ushort*)src;
        int i = 0;
        if (width >= 16 && Vector512.IsHardwareAccelerated)
            for (; i + 32 <= n; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(h + i));
                Fp16.ToFloat(lo).Store(dst + i);
                Fp16.ToFloat(hi).Store(dst + i + 16);
            }
        if (width >= 8 && Vector256.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(h + i));
                Fp16.ToFloat(lo).Store(dst + i);
                Fp16.ToFloat(hi).Store(dst + i + 8);
            }
        if (width >= 4 && Vector128.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
            {
                var (lo, hi) = Vector128.Widen(Vector128.Load(h + i));
                Fp16.ToFloat(lo).Store(dst + i);
                Fp16.ToFloat(hi).Store(dst + i + 4);
            }
        for (; i < n; i++) dst[i] = Fp16.ToFloat(h[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8Blocks(byte* src, float* dst, int blocks, int width)
    {
        for (int b = 0; b < blocks; b++, src += KvCacheTypes.Q8BlockBytes, dst += KvCacheTypes.Q8Block)
        {
            float d = Fp16.Read(src);
            sbyte* q = (sbyte*)(src + 2);
            if (width >= 8 && Vector256.IsHardwareAccelerated)
            {
                var (s0, s1) = Vector256.Widen(Vector256.Load(q));
                var vd = Vector256.Create(d);
                var (i0, i1) = Vector256.Widen(s0);
                var (i2, i3) = Vector256.Widen(s1);
                (Vector256.ConvertToSingle(i0) * vd).Store(dst);
                (Vector256.ConvertToSingle(i1) * vd).Store(dst + 8);
                (Vector256.ConvertToSingle(i2) * vd).Store(dst + 16);
                (Vector256.ConvertToSingle(i3) * vd).Store(dst + 24);
            }
            else if (width >= 4 && Vector128.IsHardwareAccelerated)
            {
                var vd = Vector128.Create(d);
                for (int h = 0; h < 32; h += 16)
                {
                    var (s0, s1) = Vector128.Widen(Vector128.Load(q + h));
                    var (i0, i1) = Vector128.Widen(s0);
                    var (i2, i3) = Vector128.Widen(s1);
                    (Vector128.ConvertToSingle(i0) * vd).Store(dst + h);
                    (Vector128.ConvertToSingle(i1) * vd).Store(dst + h + 4);
                    (Vector128.ConvertToSingle(i2) * vd).Store(dst + h + 8);
                    (Vector128.ConvertToSingle(i3) * vd).Store(dst + h + 12);
                }
            }
            else
                for (int i = 0; i < 32; i++) dst[i] = d * q[i];
        }
    }
}
