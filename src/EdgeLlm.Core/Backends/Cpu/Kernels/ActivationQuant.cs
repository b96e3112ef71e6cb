using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Quantizes an activation vector once per token so the weight dot products can run in integers, as llama.cpp does:
/// Q8_0 blocks (32 values, <c>fp16 d; i8 qs[32]</c>, 34 bytes, byte-identical to <see cref="Quant.Q8_0.Quantize"/>)
/// for Q4_0, Q8_0, Q5_0 and IQ4_NL weights, Q8_1 blocks (32 values, <c>fp16 d; fp16 s; i8 qs[32]</c>, 36 bytes, ggml's
/// CPU <c>block_q8_1</c> / <c>quantize_row_q8_1_ref</c>: s = d·Σq, for the min term) for Q4_1 and Q5_1 weights, and Q8_K blocks (256 values, <c>f32 d; i8 qs[256]; i16 bsums[16]</c>, 292 bytes,
/// ggml's <c>block_q8_K</c> / <c>quantize_row_q8_K_ref</c>) for Q4_K and Q6_K weights. bsums[g] is the sum of
/// qs[16g..16g+15]; the K-quant kernels use it for the min and offset terms. Vectorized with Vector128 so it runs
/// the same on x64 and arm64; every lane does the scalar reference's float operations, so the bytes are identical.
/// </summary>
public static unsafe partial class ActivationQuant
{
    public const int Q8_0BlockSize = Quant.Q8_0.BlockSize;
    public const int Q8_0BlockBytes = Quant.Q8_0.BlockBytes;
    public const int Q8_1BlockSize = 32;
    public const int Q8_1BlockBytes = 36;
    public const int Q8_KBlockSize = 256;
    public const int Q8_KBlockBytes = 292;
    /// <summary>Byte offset of qs in a Q8_K block (d is a float at 0).</summary>
    public const int Q8_KQsOffset = 4;
    /// <summary>Byte offset of bsums (16 × int16) in a Q8_K block.</summary>
    public const int Q8_KBsumsOffset = 260;

    /// <summary>Which activation format a weight type's kernels take (its <see cref="TypeTraits.Activation"/>): Q8_0 for Q4_0/Q8_0/Q5_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants and IQ4_XS.</summary>
    public static GgmlType FormatFor(GgmlType weightType) =>
        TypeTraits.Of(weightType) is { IsQuantized: true } row
            ? row.Activation
            : throw new NotSupportedException($"ActivationQuant: no integer kernel for {GgmlTypes.Name(weightType)} weights");

    /// <summary>Bytes the quantized activations of <paramref name="n"/> values take for <paramref name="weightType"/>.</summary>
    public static int BytesFor(GgmlType weightType, int n) => FormatBytes(FormatFor(weightType), n);

    /// <summary>Elements and bytes per block of an activation format.</summary>
    public static (int BlockSize, int BlockBytes) FormatGeometry(GgmlType format) => format switch
    {
        GgmlType.Q8_0 => (Q8_0BlockSize, Q8_0BlockBytes),
        GgmlType.Q8_1 => (Q8_1BlockSize, Q8_1BlockBytes),
        GgmlType.Q8_K => (Q8_KBlockSize, Q8_KBlockBytes),
        _ => throw new NotSupportedException($"ActivationQuant: {GgmlTypes.Name(format)} is not an activation format"),
    };

    /// <summary>Bytes <paramref name="n"/> values take in the activation format <paramref name="format"/>.</summary>
    public static int FormatBytes(GgmlType format, int n)
    {
        var (bs, bb) = FormatGeometry(format);
        return n / bs * bb;
    }

    /// <summary>The quantizer of an activation format (resolved once per matmul call, called per token): the widest this CPU runs.</summary>
    internal static delegate*<float*, byte*, int, void> Quantizer(GgmlType format) => Quantizer(format, KernelRung.Selected);

    /// <summary>
    /// The quantizer of an activation format for a kernel row of <paramref name="rung"/>: Q8_0 at the rung's width where the
    /// CPU has it (<see cref="QuantizeQ8_0Avx512"/>, <see cref="QuantizeQ8_0Avx2"/>, else the 128-bit <see cref="QuantizeQ8_0"/>;
    /// all give the same bytes).
    /// </summary>
    internal static delegate*<float*, byte*, int, void> Quantizer(GgmlType format, Rung rung) => format switch
    {
        GgmlType.Q8_0 => rung == Rung.Avx512 && KernelRung.IsSupported(Rung.Avx512) ? &QuantizeQ8_0Avx512
            : rung is Rung.Avx512 or Rung.Avx2 && KernelRung.IsSupported(Rung.Avx2) ? &QuantizeQ8_0Avx2 : &QuantizeQ8_0,
        GgmlType.Q8_1 => &QuantizeQ8_1,
        GgmlType.Q8_K => &QuantizeQ8_K,
        _ => throw new NotSupportedException($"ActivationQuant: {GgmlTypes.Name(format)} is not an activation format"),
    };

    /// <summary>Quantizes <paramref name="x"/> into the format <paramref name="weightType"/>'s kernels take.</summary>
    public static void QuantizeFor(GgmlType weightType, float* x, byte* dst, int n) => Quantizer(FormatFor(weightType))(x, dst, n);

    /// <summary>
    /// x → Q8_0 blocks: d = amax/127 (stored fp16), q = round-half-away(x·(1/d)); an all-zero block gives d = 0, q = 0.
    /// </summary>
    public static void QuantizeQ8_0(float* x, byte* dst, int n)
    {
        if (n < 0 || n % Q8_0BlockSize != 0) KernelRung.ThrowBadLength("ActivationQuant.QuantizeQ8_0", n, Q8_0BlockSize);
        for (int b = 0; b < n / Q8_0BlockSize; b++)
        {
            float* xb = x + b * Q8_0BlockSize;
            byte* y = dst + b * Q8_0BlockBytes;
            Vector128<float> m = Vector128.Abs(Vector128.Load(xb));
            for (int j = 4; j < Q8_0BlockSize; j += 4) m = Vector128.Max(m, Vector128.Abs(Vector128.Load(xb + j)));
            float amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
            float d = amax / 127f;
            float id = d != 0f ? 1f / d : 0f;
            Unsafe.WriteUnaligned(y, BitConverter.HalfToUInt16Bits((Half)d));
            Vector128<float> vid = Vector128.Create(id);
            for (int j = 0; j < Q8_0BlockSize; j += 16)
            {
                Vector128<int> q0 = RoundAway(Vector128.Load(xb + j) * vid);
                Vector128<int> q1 = RoundAway(Vector128.Load(xb + j + 4) * vid);
                Vector128<int> q2 = RoundAway(Vector128.Load(xb + j + 8) * vid);
                Vector128<int> q3 = RoundAway(Vector128.Load(xb + j + 12) * vid);
                Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).Store((sbyte*)(y + 2 + j));
            }
        }
    }

    /// <summary>
    /// x → Q8_1 blocks (ggml's reference): d and q as Q8_0 (d = amax/127, q = round-half-away(x·(1/d))), then
    /// s = fp16(Σq · d) with the integer sum of the block's 32 q. An all-zero block gives d = s = 0, q = 0.
    /// </summary>
    public static void QuantizeQ8_1(float* x, byte* dst, int n)
    {
        if (n < 0 || n % Q8_1BlockSize != 0) KernelRung.ThrowBadLength("ActivationQuant.QuantizeQ8_1", n, Q8_1BlockSize);
        for (int b = 0; b < n / Q8_1BlockSize; b++)
        {
            float* xb = x + b * Q8_1BlockSize;
            byte* y = dst + b * Q8_1BlockBytes;
            Vector128<float> m = Vector128.Abs(Vector128.Load(xb));
            for (int j = 4; j < Q8_1BlockSize; j += 4) m = Vector128.Max(m, Vector128.Abs(Vector128.Load(xb + j)));
            float amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
            float d = amax / 127f;
            float id = d != 0f ? 1f / d : 0f;
            Vector128<float> vid = Vector128.Create(id);
            Vector128<int> sum = Vector128<int>.Zero;
            for (int j = 0; j < Q8_1BlockSize; j += 16)
            {
                Vector128<int> q0 = RoundAway(Vector128.Load(xb + j) * vid);
                Vector128<int> q1 = RoundAway(Vector128.Load(xb + j + 4) * vid);
                Vector128<int> q2 = RoundAway(Vector128.Load(xb + j + 8) * vid);
                Vector128<int> q3 = RoundAway(Vector128.Load(xb + j + 12) * vid);
                Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).Store((sbyte*)(y + 4 + j));
                sum += (q0 + q1) + (q2 + q3);
            }
            Unsafe.WriteUnaligned(y, BitConverter.HalfToUInt16Bits((Half)d));
            Unsafe.WriteUnaligned(y + 2, BitConverter.HalfToUInt16Bits((Half)(Vector128.Sum(sum) * d)));
        }
    }

    /// <summary>Q8_1 blocks → floats d·q (for tests and tools; s is not needed to rebuild the values).</summary>
    public static void DequantizeQ8_1(byte* src, float* dst, int n)
    {
        if (n < 0 || n % Q8_1BlockSize != 0) KernelRung.ThrowBadLength("ActivationQuant.DequantizeQ8_1", n, Q8_1BlockSize);
        for (int b = 0; b < n / Q8_1BlockSize; b++)
        {
            byte* y = src + b * Q8_1BlockBytes;
            float d = (float)BitConverter.UInt16BitsToHalf(Unsafe.ReadUnaligned<ushort>(y));
            sbyte* qs = (sbyte*)(y + 4);
            for (int j = 0; j < Q8_1BlockSize; j++) dst[b * Q8_1BlockSize + j] = d * qs[j];
        }
    }

    /// <summary>
    /// x → Q8_K blocks (ggml's reference): max = the signed value of the first largest |x|, iscale = −127/max,
    /// q = min(127, nearest_int(iscale·x)), d = 1/iscale, bsums = sums of 16 q. An all-zero block gives d = 0, q = 0,
    /// bsums = 0.
    /// </summary>
    public static void QuantizeQ8_K(float* x, byte* dst, int n)
    {
        if (n < 0 || n % Q8_KBlockSize != 0) KernelRung.ThrowBadLength("ActivationQuant.QuantizeQ8_K", n, Q8_KBlockSize);
        for (int b = 0; b < n / Q8_KBlockSize; b++)
        {
            float* xb = x + b * Q8_KBlockSize;
            byte* y = dst + b * Q8_KBlockBytes;
            sbyte* qs = (sbyte*)(y + Q8_KQsOffset);
            short* bsums = (short*)(y + Q8_KBsumsOffset);

            Vector128<float> m = Vector128.Abs(Vector128.Load(xb));
            for (int j = 4; j < Q8_KBlockSize; j += 4) m = Vector128.Max(m, Vector128.Abs(Vector128.Load(xb + j)));
            float amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
            if (amax == 0f)
            {
                new Span<byte>(y, Q8_KBlockBytes).Clear();
                continue;
            }
            int first = 0;
            while (first < Q8_KBlockSize - 1 && MathF.Abs(xb[first]) != amax) first++; // bounded: a NaN never matches
            float iscale = -127f / xb[first];

            Vector128<float> vs = Vector128.Create(iscale);
            for (int g = 0; g < 16; g++)
            {
                float* xg = xb + 16 * g;
                Vector128<int> q0 = NearestIntMax127(Vector128.Load(xg) * vs);
                Vector128<int> q1 = NearestIntMax127(Vector128.Load(xg + 4) * vs);
                Vector128<int> q2 = NearestIntMax127(Vector128.Load(xg + 8) * vs);
                Vector128<int> q3 = NearestIntMax127(Vector128.Load(xg + 12) * vs);
                Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).Store(qs + 16 * g);
                Unsafe.WriteUnaligned(bsums + g, (short)Vector128.Sum(q0 + q1 + q2 + q3));
            }
            Unsafe.WriteUnaligned(y, 1f / iscale);
        }
    }

    /// <summary>Q8_K blocks → floats d·q (for tests and tools).</summary>
    public static void DequantizeQ8_K(byte* src, float* dst, int n)
    {
        if (n < 0 || n % Q8_KBlockSize != 0) KernelRung.ThrowBadLength("ActivationQuant.DequantizeQ8_K", n, Q8_KBlockSize);
        for (int b = 0; b < n / Q8_KBlockSize; b++)
        {
            byte* y = src + b * Q8_KBlockBytes;
            float d = Unsafe.ReadUnaligned<float>(y);
            sbyte* qs = (sbyte*)(y + Q8_KQsOffset);
            for (int j = 0; j < Q8_KBlockSize; j++) dst[b * Q8_KBlockSize + j] = d * qs[j];
        }
    }

    /// <summary>roundf: half away from zero. v − trunc(v) is exact, so the comparison with 0.5 decides exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> RoundAway(Vector128<float> v)
    {
        Vector128<float> t = Vector128.Truncate(v);
        Vector128<float> up = Vector128.GreaterThanOrEqual(Vector128.Abs(v - t), Vector128.Create(0.5f));
        Vector128<float> step = Vector128.CopySign(Vector128.Create(1f), v) & up;
        return Vector128.ConvertToInt32(t + step);
    }

    /// <summary>ggml's nearest_int (add 1.5·2^23, read the mantissa: round half to even), then min(127, ·).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NearestIntMax127(Vector128<float> v)
    {
        Vector128<int> i = ((v + Vector128.Create(12582912f)).AsInt32() & Vector128.Create(0x007fffff)) - Vector128.Create(0x00400000);
        return Vector128.Min(i, Vector128.Create(127));
    }
}
