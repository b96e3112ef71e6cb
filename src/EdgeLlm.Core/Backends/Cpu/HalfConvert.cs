using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// F16 and BF16 rows widened to float32 (exactly: every half and bfloat16 value is a float32 value), so
/// a BF16 matmul row (and an F16/BF16 embedding row) is converted once into float32 and then dotted with each token
/// of the batch by <see cref="Kernels.DotF32.Dot"/>. The F16 conversion is the classic
/// bit trick: move exponent and mantissa into float position and rebias the exponent by 112, fix up
/// Inf/NaN (rebias once more) and zero/subnormals (renormalise by a float subtraction, which is exact).
/// </summary>
internal static unsafe class HalfConvert
{
    private const uint ExpMask = 0x7c00u << 13;     // the half exponent field after the shift
    private const uint Rebias = (127 - 15) << 23;   // half bias 15 -> float bias 127
    private const uint Denorm = 113u << 23;         // 2^-14 as float bits, for subnormals

    public static void F16ToF32(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 32; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(src + i));
                Convert(lo).Store(dst + i);
                Convert(hi).Store(dst + i + 16);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Convert(lo).Store(dst + i);
                Convert(hi).Store(dst + i + 8);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
            {
                var (lo, hi) = Vector128.Widen(Vector128.Load(src + i));
                Convert(lo).Store(dst + i);
                Convert(hi).Store(dst + i + 4);
            }
        }
        for (; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(src[i]);
    }

    public static void BF16ToF32(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Vector256.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                Vector256.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 8);
            }
        }
        for (; i < n; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)src[i] << 16);
    }

    private static Vector512<float> Convert(Vector512<uint> h)
    {
        var o = (h & Vector512.Create(0x7fffu)) << 13;
        var exp = o & Vector512.Create(ExpMask);
        o += Vector512.Create(Rebias);
        o += Vector512.Equals(exp, Vector512.Create(ExpMask)) & Vector512.Create(Rebias);
        var sub = (o + Vector512.Create(1u << 23)).AsSingle() - Vector512.Create(Denorm).AsSingle();
        var f = Vector512.ConditionalSelect(Vector512.Equals(exp, Vector512<uint>.Zero).AsSingle(), sub, o.AsSingle());
        return (f.AsUInt32() | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }

    private static Vector256<float> Convert(Vector256<uint> h)
    {
        var o = (h & Vector256.Create(0x7fffu)) << 13;
        var exp = o & Vector256.Create(ExpMask);
        o += Vector256.Create(Rebias);
        o += Vector256.Equals(exp, Vector256.Create(ExpMask)) & Vector256.Create(Rebias);
        var sub = (o + Vector256.Create(1u << 23)).AsSingle() - Vector256.Create(Denorm).AsSingle();
        var f = Vector256.ConditionalSelect(Vector256.Equals(exp, Vector256<uint>.Zero).AsSingle(), sub, o.AsSingle());
        return (f.AsUInt32() | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    private static Vector128<float> Convert(Vector128<uint> h)
    {
        var o = (h & Vector128.Create(0x7fffu)) << 13;
        var exp = o & Vector128.Create(ExpMask);
        o += Vector128.Create(Rebias);
        o += Vector128.Equals(exp, Vector128.Create(ExpMask)) & Vector128.Create(Rebias);
        var sub = (o + Vector128.Create(1u << 23)).AsSingle() - Vector128.Create(Denorm).AsSingle();
        var f = Vector128.ConditionalSelect(Vector128.Equals(exp, Vector128<uint>.Zero).AsSingle(), sub, o.AsSingle());
        return (f.AsUInt32() | ((h & Vector128.Create(0x8000u)) << 16)).AsSingle();
    }
}
