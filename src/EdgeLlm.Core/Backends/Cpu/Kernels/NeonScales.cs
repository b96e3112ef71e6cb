using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Block scales of the NEON loops over 32-weight blocks, four blocks at a time in one vector: the fp16 fields of four
/// consecutive blocks read as integers (ldrh + ins, the stride a compile-time constant) and converted in registers by
/// <see cref="Fp16.ToFloatMul"/>, instead of a scalar conversion of ~15 instructions with two branches per field and
/// block. Lane k of <see cref="Products4"/> equals <c>Fp16.Read(w + k·ws) · Fp16.Read(x + k·xs)</c> exactly (the same
/// float product), and each block's FMA takes its lane by index (fmla v.4s, v.4s, v.s[k]), which is the same fused
/// operation as the broadcast FMA of the one-block loops: the results do not change by one bit.
/// </summary>
internal static unsafe class NeonScales
{
    /// <summary>The fp16 values at <paramref name="p"/> + k·<paramref name="stride"/>, k = 0..3, as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Half4(byte* p, int stride) => Fp16.ToFloatMul(Vector128.Create(
        (uint)Unsafe.ReadUnaligned<ushort>(p), (uint)Unsafe.ReadUnaligned<ushort>(p + stride),
        (uint)Unsafe.ReadUnaligned<ushort>(p + 2 * stride), (uint)Unsafe.ReadUnaligned<ushort>(p + 3 * stride)));

    /// <summary>d_w·d_x of four consecutive blocks: lane k from the blocks at <paramref name="w"/> + k·<paramref name="ws"/> and <paramref name="x"/> + k·<paramref name="xs"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Products4(byte* w, int ws, byte* x, int xs) => Half4(w, ws) * Half4(x, xs);

    /// <summary>
    /// One token's step over a Q8_0 activation block (as <see cref="NeonDot.Q8_0Token"/>) with the scale product taken
    /// from lane <paramref name="lane"/> of <paramref name="d"/> (a constant at every call site).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Q8_0Lane<TDp>(Vector128<float> acc, Vector128<sbyte> lo, Vector128<sbyte> hi, byte* yb, Vector128<float> d,
        [ConstantExpected(Max = (byte)3)] byte lane) where TDp : struct, IIsaFlag
    {
        Vector128<int> isum = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 2)));
        isum = NeonDot.Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 18)));
        return AdvSimd.Arm64.FusedMultiplyAddBySelectedScalar(acc, AdvSimd.ConvertToSingle(isum), d, lane);
    }

    /// <summary>
    /// One token's step over a Q8_1 activation block (as <see cref="NeonDot.Q8_1Token"/>): the scale product from lane
    /// <paramref name="lane"/> of <paramref name="d"/>, and lane <paramref name="lane"/> of <paramref name="m"/> (m_w·s_x)
    /// added to <paramref name="mSum"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Q8_1Lane<TDp>(Vector128<float> acc, ref float mSum, Vector128<sbyte> lo, Vector128<sbyte> hi, byte* yb,
        Vector128<float> d, Vector128<float> m, [ConstantExpected(Max = (byte)3)] byte lane) where TDp : struct, IIsaFlag
    {
        Vector128<int> isum = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 4)));
        isum = NeonDot.Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 20)));
        mSum += m.GetElement(lane);
        return AdvSimd.Arm64.FusedMultiplyAddBySelectedScalar(acc, AdvSimd.ConvertToSingle(isum), d, lane);
    }
    /// <summary>
    /// The two fp16 values at <paramref name="p"/> and <paramref name="p"/> + 2 (a K-quant block's d and d_min) as floats in
    /// lanes 0 and 1 (lanes 2, 3: zero), converted in registers by <see cref="Fp16.ToFloatMul"/>: equal to
    /// <c>Fp16.Read(p)</c> and <c>Fp16.Read(p + 2)</c> for every half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> HalfPair(byte* p) =>
        Fp16.ToFloatMul(AdvSimd.ZeroExtendWideningLower(Vector64.CreateScalar(Unsafe.ReadUnaligned<uint>(p)).AsUInt16()));

    /// <summary>The fp16 value at <paramref name="p"/> (a Q6_K block's d) converted in a vector register by <see cref="Fp16.ToFloatMul"/>: equal to <c>Fp16.Read(p)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half1(byte* p) => Fp16.ToFloatMul(Vector128.CreateScalar((uint)Unsafe.ReadUnaligned<ushort>(p))).ToScalar();

    /// <summary>
    /// The eight 6-bit sub-block scales and mins of a Q4_K/Q5_K block from its 12 packed bytes at <paramref name="s"/>,
    /// unpacked in vector registers as <c>DotQ4_K.UnpackScales</c> does it in scalar code (bytes 0-3: low six bits of scales
    /// 0-3, their top two bits in bits 6-7; bytes 4-7 the same for the mins; bytes 8-11: low nibbles the low four bits of
    /// scales 4-7, high nibbles those of mins 4-7): scales of sub-blocks 0-3 in <paramref name="scLo"/>, 4-7 in
    /// <paramref name="scHi"/> (int32 lanes, for mla by element), the mins widened to int16 lanes (<see cref="NeonDot.MinSum"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void KScales(byte* s, out Vector128<int> scLo, out Vector128<int> scHi, out Vector128<short> mins8)
    {
        Vector64<byte> u01 = AdvSimd.LoadVector64(s);
        Vector64<byte> u22 = AdvSimd.LoadAndReplicateToVector64((uint*)(s + 8)).AsByte();
        Vector64<byte> low = AdvSimd.And(u01, Vector64.Create((byte)0x3F));
        // Bytes 8-11 as they are (scales) and shifted right by four (mins), low nibble kept; plus bits 6-7 of bytes 0-7 as bits 4-5.
        Vector64<byte> hi4 = AdvSimd.And(AdvSimd.ShiftLogical(u22, Vector64.Create((sbyte)0, 0, 0, 0, -4, -4, -4, -4)), Vector64.Create((byte)0x0F));
        Vector64<byte> high = AdvSimd.Or(hi4, AdvSimd.ShiftLeftLogical(AdvSimd.ShiftRightLogical(u01, 6), 4));
        Vector64<byte> sc = AdvSimd.Arm64.ZipLow(low.AsUInt32(), high.AsUInt32()).AsByte();
        Vector64<byte> mn = AdvSimd.Arm64.ZipHigh(low.AsUInt32(), high.AsUInt32()).AsByte();
        Vector128<ushort> sc16 = AdvSimd.ZeroExtendWideningLower(sc);
        scLo = AdvSimd.ZeroExtendWideningLower(sc16.GetLower()).AsInt32();
        scHi = AdvSimd.ZeroExtendWideningUpper(sc16).AsInt32();
        mins8 = AdvSimd.ZeroExtendWideningLower(mn).AsInt16();
    }
}
