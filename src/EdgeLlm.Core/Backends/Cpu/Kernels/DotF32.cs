using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Σ a[i]·b[i] over float vectors, TensorPrimitives style: <see cref="Dot"/> takes the widest hardware-accelerated
/// width (Vector512 → Vector256 → Vector128 → scalar) once per call; each width runs four independent FMA
/// accumulators, then finishes the remainder with the next narrower step and scalar code. The Dot{Width} methods run
/// one ladder rung directly (tests); a width the hardware does not accelerate still works, just slowly.
/// </summary>
public static unsafe class DotF32
{
    public static float Dot(float* a, float* b, int n)
    {
        if (n < 0) ThrowNegative(n);
        if (Vector512.IsHardwareAccelerated) return Dot512(a, b, n);
        if (Vector256.IsHardwareAccelerated) return Dot256(a, b, n);
        if (Vector128.IsHardwareAccelerated) return Dot128(a, b, n);
        return DotScalar(a, b, n);
    }

    public static float Dot512(float* a, float* b, int n)
    {
        if (n < 0) ThrowNegative(n);
        Vector512<float> s0 = Vector512<float>.Zero, s1 = s0, s2 = s0, s3 = s0;
        int i = 0;
        for (; i + 64 <= n; i += 64)
        {
            s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
            s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), s1);
            s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 32), Vector512.Load(b + i + 32), s2);
            s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 48), Vector512.Load(b + i + 48), s3);
        }
        for (; i + 16 <= n; i += 16) s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
        return Vector512.Sum((s0 + s1) + (s2 + s3)) + Dot256(a + i, b + i, n - i);
    }

    public static float Dot256(float* a, float* b, int n)
    {
        if (n < 0) ThrowNegative(n);
        Vector256<float> s0 = Vector256<float>.Zero, s1 = s0, s2 = s0, s3 = s0;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), s1);
            s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 16), Vector256.Load(b + i + 16), s2);
            s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 24), Vector256.Load(b + i + 24), s3);
        }
        for (; i + 8 <= n; i += 8) s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
        return Vector256.Sum((s0 + s1) + (s2 + s3)) + Dot128(a + i, b + i, n - i);
    }

    public static float Dot128(float* a, float* b, int n)
    {
        if (n < 0) ThrowNegative(n);
        Vector128<float> s0 = Vector128<float>.Zero, s1 = s0, s2 = s0, s3 = s0;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            s0 = Vector128.FusedMultiplyAdd(Vector128.Load(a + i), Vector128.Load(b + i), s0);
            s1 = Vector128.FusedMultiplyAdd(Vector128.Load(a + i + 4), Vector128.Load(b + i + 4), s1);
            s2 = Vector128.FusedMultiplyAdd(Vector128.Load(a + i + 8), Vector128.Load(b + i + 8), s2);
            s3 = Vector128.FusedMultiplyAdd(Vector128.Load(a + i + 12), Vector128.Load(b + i + 12), s3);
        }
        for (; i + 4 <= n; i += 4) s0 = Vector128.FusedMultiplyAdd(Vector128.Load(a + i), Vector128.Load(b + i), s0);
        return Vector128.Sum((s0 + s1) + (s2 + s3)) + DotScalar(a + i, b + i, n - i);
    }

    public static float DotScalar(float* a, float* b, int n)
    {
        if (n < 0) ThrowNegative(n);
        float s = 0f;
        for (int i = 0; i < n; i++) s = MathF.FusedMultiplyAdd(a[i], b[i], s);
        return s;
    }

    private static void ThrowNegative(int n) => throw new ArgumentOutOfRangeException(nameof(n), $"DotF32: n = {n} is negative");
}
