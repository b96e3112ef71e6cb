using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Σ w[i]·x[i] with fp16 weights and float activations: the weights are widened to uint32 and converted to float in
/// registers (<see cref="Fp16"/>, exact), then FMA. Same ladder as <see cref="DotF32"/>: <see cref="Dot"/> picks
/// Vector512 → Vector256 → Vector128 → scalar once per call, each width with two accumulators per widened half and
/// the remainder handed to the next narrower step.
/// </summary>
public static unsafe class DotF16
{
    public static float Dot(Half* w, float* x, int n)
    {
        if (n < 0) ThrowNegative(n);
        if (Vector512.IsHardwareAccelerated) return Dot512(w, x, n);
        if (Vector256.IsHardwareAccelerated) return Dot256(w, x, n);
        if (Vector128.IsHardwareAccelerated) return Dot128(w, x, n);
        return DotScalar(w, x, n);
    }

    public static float Dot512(Half* w, float* x, int n)
    {
        if (n < 0) ThrowNegative(n);
        ushort* h = (ushort*)w;
        Vector512<float> s0 = Vector512<float>.Zero, s1 = s0;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.Load(h + i));
            s0 = Vector512.FusedMultiplyAdd(Fp16.ToFloat(lo), Vector512.Load(x + i), s0);
            s1 = Vector512.FusedMultiplyAdd(Fp16.ToFloat(hi), Vector512.Load(x + i + 16), s1);
        }
        return Vector512.Sum(s0 + s1) + Dot256(w + i, x + i, n - i);
    }

    public static float Dot256(Half* w, float* x, int n)
    {
        if (n < 0) ThrowNegative(n);
        ushort* h = (ushort*)w;
        Vector256<float> s0 = Vector256<float>.Zero, s1 = s0;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(h + i));
            s0 = Vector256.FusedMultiplyAdd(Fp16.ToFloat(lo), Vector256.Load(x + i), s0);
            s1 = Vector256.FusedMultiplyAdd(Fp16.ToFloat(hi), Vector256.Load(x + i + 8), s1);
        }
        return Vector256.Sum(s0 + s1) + Dot128(w + i, x + i, n - i);
    }

    public static float Dot128(Half* w, float* x, int n)
    {
        if (n < 0) ThrowNegative(n);
        ushort* h = (ushort*)w;
        Vector128<float> s0 = Vector128<float>.Zero, s1 = s0;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            (Vector128<uint> lo, Vector128<uint> hi) = Vector128.Widen(Vector128.Load(h + i));
            s0 = Vector128.FusedMultiplyAdd(Fp16.ToFloat(lo), Vector128.Load(x + i), s0);
            s1 = Vector128.FusedMultiplyAdd(Fp16.ToFloat(hi), Vector128.Load(x + i + 4), s1);
        }
        return Vector128.Sum(s0 + s1) + DotScalar(w + i, x + i, n - i);
    }

    public static float DotScalar(Half* w, float* x, int n)
    {
        if (n < 0) ThrowNegative(n);
        ushort* h = (ushort*)w;
        float s = 0f;
        for (int i = 0; i < n; i++) s = MathF.FusedMultiplyAdd(Fp16.ToFloat(h[i]), x[i], s);
        return s;
    }

    /// <summary>Exact fp16 → float for one value (the same conversion the vector paths use), for callers and tests.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(Half h) => Fp16.ToFloat(BitConverter.HalfToUInt16Bits(h));

    private static void ThrowNegative(int n) => throw new ArgumentOutOfRangeException(nameof(n), $"DotF16: n = {n} is negative");
}
