using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// float32 dot product, the inner loop of every F32/F16/BF16 matmul and of attention. Ladder: the widest
/// hardware-accelerated vector (512, 256, 128 bits) with four independent accumulators to hide add
/// latency, then one accumulator, then a scalar tail. The summation order depends only on n and the
/// machine's vector width, never on threads or batch size.
/// </summary>
internal static unsafe class Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float F32(float* a, float* b, int n)
    {
        if (Vector512.IsHardwareAccelerated && n >= Vector512<float>.Count) return F32V512(a, b, n);
        if (Vector256.IsHardwareAccelerated && n >= Vector256<float>.Count) return F32V256(a, b, n);
        if (Vector128.IsHardwareAccelerated && n >= Vector128<float>.Count) return F32V128(a, b, n);
        return F32Scalar(a, b, 0, n, 0f);
    }

    private static float F32Scalar(float* a, float* b, int i, int n, float sum)
    {
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    private static float F32V512(float* a, float* b, int n)
    {
        const int W = 16;
        var s0 = Vector512<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
        int i = 0;
        for (; i <= n - 4 * W; i += 4 * W)
        {
            s0 += Vector512.Load(a + i) * Vector512.Load(b + i);
            s1 += Vector512.Load(a + i + W) * Vector512.Load(b + i + W);
            s2 += Vector512.Load(a + i + 2 * W) * Vector512.Load(b + i + 2 * W);
            s3 += Vector512.Load(a + i + 3 * W) * Vector512.Load(b + i + 3 * W);
        }
        for (; i <= n - W; i += W) s0 += Vector512.Load(a + i) * Vector512.Load(b + i);
        return F32Scalar(a, b, i, n, Vector512.Sum((s0 + s1) + (s2 + s3)));
    }

    private static float F32V256(float* a, float* b, int n)
    {
        const int W = 8;
        var s0 = Vector256<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
        int i = 0;
        for (; i <= n - 4 * W; i += 4 * W)
        {
            s0 += Vector256.Load(a + i) * Vector256.Load(b + i);
            s1 += Vector256.Load(a + i + W) * Vector256.Load(b + i + W);
            s2 += Vector256.Load(a + i + 2 * W) * Vector256.Load(b + i + 2 * W);
            s3 += Vector256.Load(a + i + 3 * W) * Vector256.Load(b + i + 3 * W);
        }
        for (; i <= n - W; i += W) s0 += Vector256.Load(a + i) * Vector256.Load(b + i);
        return F32Scalar(a, b, i, n, Vector256.Sum((s0 + s1) + (s2 + s3)));
    }

    private static float F32V128(float* a, float* b, int n)
    {
        const int W = 4;
        var s0 = Vector128<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
        int i = 0;
        for (; i <= n - 4 * W; i += 4 * W)
        {
            s0 += Vector128.Load(a + i) * Vector128.Load(b + i);
            s1 += Vector128.Load(a + i + W) * Vector128.Load(b + i + W);
            s2 += Vector128.Load(a + i + 2 * W) * Vector128.Load(b + i + 2 * W);
            s3 += Vector128.Load(a + i + 3 * W) * Vector128.Load(b + i + 3 * W);
        }
        for (; i <= n - W; i += W) s0 += Vector128.Load(a + i) * Vector128.Load(b + i);
        return F32Scalar(a, b, i, n, Vector128.Sum((s0 + s1) + (s2 + s3)));
    }
}
