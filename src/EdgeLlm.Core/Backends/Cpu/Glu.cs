using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// gate[i] = act(gate[i]) * up[i] with act = silu (x / (1 + e^-x)) or tanh-approximated GELU, written as
/// x / (1 + e^(-2u)), u = sqrt(2/π)(x + 0.044715 x³) (the same number as 0.5 x (1 + tanh u), without the
/// cancellation). The activation is a struct type argument, so each kind compiles to its own loop. Threads split
/// the elements; each element's math is fixed (the widest vector the machine has, then the same formula in scalar
/// for the tail), so results do not depend on the thread count.
/// </summary>
internal sealed unsafe class Glu : ParallelWork
{
    private float* _gate;
    private float* _up;
    private long _count;
    private GluKind _kind;

    public void Run(WorkerPool pool, float* gate, float* up, long count, GluKind kind)
    {
        _gate = gate;
        _up = up;
        _count = count;
        _kind = kind;
        pool.Run(this, count);
    }

    public override void Execute(int thread, int threadCount)
    {
        // Split on multiples of 16 so every element outside the final tail goes through the same vector width.
        var (c0, c1) = WorkerPool.Range((_count + 15) / 16, thread, threadCount);
        long i0 = c0 * 16, i1 = Math.Min(_count, c1 * 16);
        if (_kind == GluKind.GeluTanh) Apply<GeluTanhGate>(_gate, _up, i0, i1);
        else Apply<SiluGate>(_gate, _up, i0, i1);
    }

    /// <summary>Elements [i0, i1): at the widest vector width the machine has, then scalar for the last partial group.</summary>
    internal static void Apply<TA>(float* gate, float* up, long i0, long i1) where TA : struct, IGateActivation
    {
        if (Vector512.IsHardwareAccelerated) i0 = Run<TA, SimdF512, Vector512<float>>(gate, up, i0, i1);
        else if (Vector256.IsHardwareAccelerated) i0 = Run<TA, SimdF256, Vector256<float>>(gate, up, i0, i1);
        else if (Vector128.IsHardwareAccelerated) i0 = Run<TA, SimdF128, Vector128<float>>(gate, up, i0, i1);
        Run<TA, SimdF1, float>(gate, up, i0, i1);
    }

    /// <summary>Whole groups of TS.Count elements from i0; returns where it stopped.</summary>
    private static long Run<TA, TS, TV>(float* gate, float* up, long i, long i1)
        where TA : struct, IGateActivation where TS : struct, ISimdFloat<TV> where TV : struct
    {
        for (; i <= i1 - TS.Count; i += TS.Count)
            TS.Store(TS.Mul(TA.Apply<TS, TV>(TS.Load(gate + i)), TS.Load(up + i)), gate + i);
        return i;
    }
}

/// <summary>The gate activation of <see cref="Glu"/>, at any vector width.</summary>
internal interface IGateActivation
{
    static abstract TV Apply<TS, TV>(TV x) where TS : struct, ISimdFloat<TV> where TV : struct;
}

/// <summary>silu(x) = x / (1 + e^-x).</summary>
internal struct SiluGate : IGateActivation
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Apply<TS, TV>(TV x) where TS : struct, ISimdFloat<TV> where TV : struct =>
        TS.Div(x, TS.Add(TS.Broadcast(1f), TS.Exp(TS.Sub(TS.Zero, x))));
}

/// <summary>gelu(x) ≈ 0.5 x (1 + tanh u) = x / (1 + e^(-2u)), u = sqrt(2/π) (x + 0.044715 x³).</summary>
internal struct GeluTanhGate : IGateActivation
{
    // -2 sqrt(2/π) and -2 sqrt(2/π) · 0.044715
    private const float C1 = -1.5957691216057308f;
    private const float C3 = -0.07135481627159515f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Apply<TS, TV>(TV x) where TS : struct, ISimdFloat<TV> where TV : struct
    {
        // -2u = x (C1 + C3 x²)
        TV m2u = TS.Mul(x, TS.Fma(TS.Mul(x, x), TS.Broadcast(C3), TS.Broadcast(C1)));
        return TS.Div(x, TS.Add(TS.Broadcast(1f), TS.Exp(m2u)));
    }
}
