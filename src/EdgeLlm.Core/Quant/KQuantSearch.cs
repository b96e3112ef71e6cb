using System.Numerics;
using System.Runtime.CompilerServices;

namespace EdgeLlm.Quant;

/// <summary>
/// The scale searches of the K-quant reference quantizers (ggml's <c>make_qkx2_quants</c>, <c>make_qx_quants</c>,
/// <c>make_q3_quants</c>) and IQ4_XS's scale search. All but make_q3_quants also run vectorized across the
/// sub-blocks of a super-block
/// instead of across the weights: SIMD lane k runs ggml's scalar search for sub-block k (the block is transposed
/// so lane k of row i is weight i of sub-block k), walking the weights and the trial scales in ggml's order with
/// the same single-precision operations (no reassociation, no fused multiply-add); a trial's win updates only its
/// lane (masked selects). So the results are bit-identical to ggml's, checked against ggml's bytes by the
/// Q2_K/Q4_K/Q5_K/Q6_K/IQ4_XS golden tests and llama-quantize's files (LlamaQuantPolicyTests) and against the scalar ports
/// (<see cref="MakeQkx2Quants"/>, <see cref="ScalarQx"/>) on edge cases by KQuantSearchTests. <see cref="Vector{T}"/>
/// is 8 lanes on x64 (one group per Q4_K super-block) and 4 on Neon; other widths fall back to the scalar ports.
/// </summary>
internal static unsafe class KQuantSearch
{
    /// <summary>ggml's GROUP_MAX_EPS: a group whose largest |x| is below it is all zero.</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>Largest sub-block the searches accept (Q4_K/Q5_K use 32, Q2_K and Q6_K 16).</summary>
    public const int MaxN = 32;

    /// <summary>
    /// ggml's <c>make_qkx2_quants</c> for <paramref name="nsub"/> sub-blocks of <paramref name="n"/> weights stored
    /// one after the other: each fits x ≈ scale·L + min with L in 0..nmax and min ≤ 0 by weighted least squares
    /// (error squared, or absolute with <paramref name="useMad"/>) over nstep+1 trial inverse scales <c>(rmin + rdelta·is + nmax) /
    /// (max − min)</c>. Writes L (nsub·n bytes), <paramref name="scales"/>[s] and <paramref name="mins"/>[s]
    /// (= −min, as ggml's <c>the_min</c>). One lane per sub-block, so a lane's later trials see the min its own
    /// earlier winner set, exactly as in ggml's loop.
    /// </summary>
    public static void Qkx2(int nsub, int n, int nmax, float* x, float* weights, byte* L, float* scales, float* mins,
        float rmin, float rdelta, int nstep, bool useMad)
    {
        int W = Vector<float>.Count;
        if (!Vector.IsHardwareAccelerated || n > MaxN || nsub % W != 0)
        {
            byte* laux = stackalloc byte[MaxN];
            for (int s = 0; s < nsub; s++)
                scales[s] = MakeQkx2Quants(n, nmax, x + s * n, weights + s * n, L + s * n, out mins[s], laux, rmin, rdelta, nstep, useMad);
            return;
        }
        var xt = stackalloc Vector<float>[MaxN];    // xt[i] lane k: weight i of sub-block k (transposed)
        var wt = stackalloc Vector<float>[MaxN];
        var best = stackalloc Vector<float>[MaxN];  // L of the best fit so far, as floats
        var aux = stackalloc Vector<float>[MaxN];   // L of the current trial
        float* lane = stackalloc float[Vector<float>.Count];
        var vMax = new Vector<int>(nmax);
        for (int g = 0; g < nsub; g += W)
        {
            for (int i = 0; i < n; i++)
            {
                for (int k = 0; k < W; k++) lane[k] = x[(g + k) * n + i];
                xt[i] = Unsafe.ReadUnaligned<Vector<float>>(lane);
                for (int k = 0; k < W; k++) lane[k] = weights[(g + k) * n + i];
                wt[i] = Unsafe.ReadUnaligned<Vector<float>>(lane);
            }

            var min = xt[0];
            var max = xt[0];
            var sumW = wt[0];
            var sumX = sumW * xt[0];
            for (int i = 1; i < n; i++)
            {
                min = Vector.ConditionalSelect(Vector.LessThan(xt[i], min), xt[i], min);
                max = Vector.ConditionalSelect(Vector.GreaterThan(xt[i], max), xt[i], max);
                sumW += wt[i];
                sumX += wt[i] * xt[i];
            }
            min = Vector.ConditionalSelect(Vector.GreaterThan(min, Vector<float>.Zero), Vector<float>.Zero, min);
            var flat = Vector.Equals(max, min);
            var flatMin = min;

            var iscale = new Vector<float>(nmax) / (max - min);
            var scale = Vector<float>.One / iscale;
            var bestError = Vector<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                var lf = Vector.ConvertToSingle(Vector.Max(Vector<int>.Zero, Vector.Min(vMax, NearestInt(iscale * (xt[i] - min)))));
                best[i] = lf;
                var diff = scale * lf + min - xt[i];
                bestError += wt[i] * (useMad ? Vector.Abs(diff) : diff * diff);
            }

            // ggml returns right after the first guess when nstep < 1.
            for (int step = 0; nstep >= 1 && step <= nstep; step++)
            {
                iscale = new Vector<float>(rmin + rdelta * step + nmax) / (max - min);
                Vector<float> sumL = Vector<float>.Zero, sumL2 = Vector<float>.Zero, sumXL = Vector<float>.Zero;
                for (int i = 0; i < n; i++)
                {
                    var lf = Vector.ConvertToSingle(Vector.Max(Vector<int>.Zero, Vector.Min(vMax, NearestInt(iscale * (xt[i] - min)))));
                    aux[i] = lf;
                    var wl = wt[i] * lf;
                    sumL += wl;
                    sumL2 += wl * lf;
                    sumXL += wl * xt[i];
                }
                var det = sumW * sumL2 - sumL * sumL;
                var thisScale = (sumW * sumXL - sumX * sumL) / det;
                var thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                var positive = Vector.GreaterThan(thisMin, Vector<float>.Zero);
                thisMin = Vector.ConditionalSelect(positive, Vector<float>.Zero, thisMin);
                thisScale = Vector.ConditionalSelect(positive, sumXL / sumL2, thisScale);
                var curError = Vector<float>.Zero;
                for (int i = 0; i < n; i++)
                {
                    var diff = thisScale * aux[i] + thisMin - xt[i];
                    curError += wt[i] * (useMad ? Vector.Abs(diff) : diff * diff);
                }
                var win = Vector.BitwiseAnd(Vector.GreaterThan(det, Vector<float>.Zero), Vector.LessThan(curError, bestError));
                if (Vector.EqualsAny(win, new Vector<int>(-1)))
                {
                    for (int i = 0; i < n; i++) best[i] = Vector.ConditionalSelect(win, aux[i], best[i]);
                    bestError = Vector.ConditionalSelect(win, curError, bestError);
                    scale = Vector.ConditionalSelect(win, thisScale, scale);
                    min = Vector.ConditionalSelect(win, thisMin, min);
                }
            }

            // A sub-block of equal values (max == min) is all zeros with scale 0 and min as found.
            scale = Vector.ConditionalSelect(flat, Vector<float>.Zero, scale);
            min = Vector.ConditionalSelect(flat, flatMin, min);
            Unsafe.WriteUnaligned(lane, scale);
            for (int k = 0; k < W; k++) scales[g + k] = lane[k];
            Unsafe.WriteUnaligned(lane, -min);
            for (int k = 0; k < W; k++) mins[g + k] = lane[k];
            for (int i = 0; i < n; i++)
            {
                Unsafe.WriteUnaligned(lane, Vector.ConditionalSelect(flat, Vector<float>.Zero, best[i]));
                for (int k = 0; k < W; k++) L[(g + k) * n + i] = (byte)lane[k];
            }
        }
    }

    /// <summary>
    /// ggml's <c>make_qx_quants</c> with rmse_type 1 and no importance weights for <paramref name="nsub"/>
    /// sub-blocks of <paramref name="n"/> weights: symmetric quantization to −nmax..nmax−1 (stored offset by nmax),
    /// trying −nmax/max and then −(nmax + 0.1·is)/max for is = −9..9 (not 0), keeping the best x²-weighted
    /// least-squares fit. Writes L (nsub·n signed bytes) and <paramref name="scales"/>. One lane per sub-block.
    /// </summary>
    public static void Qx(int nsub, int n, int nmax, float* x, sbyte* L, float* scales)
    {
        int W = Vector<float>.Count;
        if (!Vector.IsHardwareAccelerated || n > MaxN || nsub % W != 0)
        {
            for (int s = 0; s < nsub; s++) scales[s] = ScalarQx(n, nmax, x + s * n, L + s * n);
            return;
        }
        var xt = stackalloc Vector<float>[MaxN];
        var wx = stackalloc Vector<float>[MaxN];    // x²·x, ggml's w*x[i] with w = x²
        var ww = stackalloc Vector<float>[MaxN];    // x²
        float* lane = stackalloc float[Vector<float>.Count];
        int* li = stackalloc int[Vector<int>.Count];
        var vLo = new Vector<int>(-nmax);
        var vHi = new Vector<int>(nmax - 1);
        var vNmax = new Vector<int>(nmax);
        for (int g = 0; g < nsub; g += W)
        {
            for (int i = 0; i < n; i++)
            {
                for (int k = 0; k < W; k++) lane[k] = x[(g + k) * n + i];
                xt[i] = Unsafe.ReadUnaligned<Vector<float>>(lane);
                ww[i] = xt[i] * xt[i];
                wx[i] = ww[i] * xt[i];
            }
            var max = Vector<float>.Zero;
            var amax = Vector<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                var ax = Vector.Abs(xt[i]);
                var more = Vector.GreaterThan(ax, amax);
                amax = Vector.ConditionalSelect(more, ax, amax);
                max = Vector.ConditionalSelect(more, xt[i], max);
            }
            var zero = Vector.LessThan(amax, new Vector<float>(GroupMaxEps));

            var iscale = new Vector<float>(-nmax) / max;
            Vector<float> sumLX = Vector<float>.Zero, sumL2 = Vector<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                var lf = Vector.ConvertToSingle(Vector.Max(vLo, Vector.Min(vHi, NearestInt(iscale * xt[i]))));
                sumLX += wx[i] * lf;
                sumL2 += ww[i] * lf * lf;
            }
            var scale = Vector.ConditionalSelect(Vector.Equals(sumL2, Vector<float>.Zero), Vector<float>.Zero, sumLX / sumL2);
            var best = scale * sumLX;
            var bestIscale = iscale;
            for (int step = -9; step <= 9; step++)
            {
                if (step == 0) continue;
                iscale = new Vector<float>(-(nmax + 0.1f * step)) / max;
                sumLX = Vector<float>.Zero;
                sumL2 = Vector<float>.Zero;
                for (int i = 0; i < n; i++)
                {
                    var lf = Vector.ConvertToSingle(Vector.Max(vLo, Vector.Min(vHi, NearestInt(iscale * xt[i]))));
                    sumLX += wx[i] * lf;
                    sumL2 += ww[i] * lf * lf;
                }
                var win = Vector.BitwiseAnd(Vector.GreaterThan(sumL2, Vector<float>.Zero), Vector.GreaterThan(sumLX * sumLX, best * sumL2));
                scale = Vector.ConditionalSelect(win, sumLX / sumL2, scale);
                best = Vector.ConditionalSelect(win, scale * sumLX, best);
                bestIscale = Vector.ConditionalSelect(win, iscale, bestIscale);
            }

            Unsafe.WriteUnaligned(lane, Vector.ConditionalSelect(zero, Vector<float>.Zero, scale));
            for (int k = 0; k < W; k++) scales[g + k] = lane[k];
            for (int i = 0; i < n; i++)
            {
                var l = Vector.Max(vLo, Vector.Min(vHi, NearestInt(bestIscale * xt[i]))) + vNmax;
                Unsafe.WriteUnaligned(li, Vector.ConditionalSelect(zero, Vector<int>.Zero, l));
                for (int k = 0; k < W; k++) L[(g + k) * n + i] = (sbyte)li[k];
            }
        }
    }

    /// <summary>
    /// ggml's <c>make_q3_quants</c> with do_rmse for <paramref name="nsub"/> sub-blocks of <paramref name="n"/>
    /// weights, one lane per sub-block (see <see cref="MakeQ3Quants"/>). A lane whose pass changed nothing would
    /// change nothing in a further pass either (same state, same arithmetic), so the lanes run until no lane
    /// changes or five passes, as each scalar loop does.
    /// </summary>
    public static void Q3(int nsub, int n, int nmax, float* x, sbyte* L, float* scales)
    {
        int W = Vector<float>.Count;
        if (!Vector.IsHardwareAccelerated || n > MaxN || nsub % W != 0)
        {
            for (int s = 0; s < nsub; s++) scales[s] = MakeQ3Quants(n, nmax, x + s * n, L + s * n);
            return;
        }
        var xt = stackalloc Vector<float>[MaxN];
        var ww = stackalloc Vector<float>[MaxN];    // x²
        var wx = stackalloc Vector<float>[MaxN];    // x²·x
        var lv = stackalloc Vector<float>[MaxN];    // L as floats (−nmax..nmax−1)
        float* lane = stackalloc float[Vector<float>.Count];
        var vLo = new Vector<int>(-nmax);
        var vHi = new Vector<int>(nmax - 1);
        for (int g = 0; g < nsub; g += W)
        {
            for (int i = 0; i < n; i++)
            {
                for (int k = 0; k < W; k++) lane[k] = x[(g + k) * n + i];
                xt[i] = Unsafe.ReadUnaligned<Vector<float>>(lane);
                ww[i] = xt[i] * xt[i];
                wx[i] = ww[i] * xt[i];
            }
            var max = Vector<float>.Zero;
            var amax = Vector<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                var ax = Vector.Abs(xt[i]);
                var more = Vector.GreaterThan(ax, amax);
                amax = Vector.ConditionalSelect(more, ax, amax);
                max = Vector.ConditionalSelect(more, xt[i], max);
            }
            var zero = Vector.LessThan(amax, new Vector<float>(GroupMaxEps));

            var iscale = new Vector<float>(-nmax) / max;
            Vector<float> sumLX = Vector<float>.Zero, sumL2 = Vector<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                var l = Vector.ConvertToSingle(Vector.Max(vLo, Vector.Min(vHi, NearestInt(iscale * xt[i]))));
                lv[i] = l;
                sumLX += wx[i] * l;
                sumL2 += ww[i] * l * l;
            }
            for (int pass = 0; pass < 5; pass++)
            {
                var changed = Vector<int>.Zero;
                for (int i = 0; i < n; i++)
                {
                    var slx = sumLX - wx[i] * lv[i];
                    var sl2 = sumL2 - ww[i] * lv[i] * lv[i];
                    var newL = Vector.ConvertToSingle(Vector.Max(vLo, Vector.Min(vHi, NearestInt(xt[i] * sl2 / slx))));
                    var slxNew = slx + wx[i] * newL;
                    var sl2New = sl2 + ww[i] * newL * newL;
                    var take = Vector.GreaterThan(slx, Vector<float>.Zero)
                        & ~Vector.Equals(newL, lv[i])
                        & Vector.GreaterThan(sl2New, Vector<float>.Zero)
                        & Vector.GreaterThan(slxNew * slxNew * sumL2, sumLX * sumLX * sl2New);
                    lv[i] = Vector.ConditionalSelect(take, newL, lv[i]);
                    sumLX = Vector.ConditionalSelect(take, slxNew, sumLX);
                    sumL2 = Vector.ConditionalSelect(take, sl2New, sumL2);
                    changed |= take;
                }
                if (changed == Vector<int>.Zero) break;
            }
            var scale = Vector.ConditionalSelect(Vector.GreaterThan(sumL2, Vector<float>.Zero), sumLX / sumL2, Vector<float>.Zero);
            Unsafe.WriteUnaligned(lane, Vector.ConditionalSelect(zero, Vector<float>.Zero, scale));
            for (int k = 0; k < W; k++) scales[g + k] = lane[k];
            var vN = new Vector<float>(nmax);
            for (int i = 0; i < n; i++)
            {
                Unsafe.WriteUnaligned(lane, Vector.ConditionalSelect(zero, Vector<float>.Zero, lv[i] + vN));
                for (int k = 0; k < W; k++) L[(g + k) * n + i] = (sbyte)lane[k];
            }
        }
    }

    /// <summary>
    /// Step 1 of ggml's <c>quantize_row_iq4_xs_impl</c> without importance weights for the eight 32-weight
    /// sub-blocks of a super-block, one lane per sub-block: the scale d that best fits the 16-value grid
    /// <paramref name="grid"/> (sorted, grid[0] &lt; 0), first from −max/grid[0], then from the inverse scales
    /// (itry + grid[0])/max for itry = −ntry..ntry, x²-weighted, in ggml's order. Groups below GROUP_MAX_EPS
    /// get 0. Returns false (nothing written) when the vector width does not divide nsub, so the caller runs its
    /// scalar loop.
    /// </summary>
    public static bool IQ4Scales(int nsub, int n, float* x, sbyte* grid, int ntry, float* scales)
    {
        int W = Vector<float>.Count;
        if (!Vector.IsHardwareAccelerated || n > MaxN || nsub % W != 0) return false;
        var xt = stackalloc Vector<float>[MaxN];
        var ww = stackalloc Vector<float>[MaxN];
        float* lane = stackalloc float[Vector<float>.Count];
        var g = stackalloc Vector<float>[16];
        for (int k = 0; k < 16; k++) g[k] = new Vector<float>(grid[k]);
        for (int s0 = 0; s0 < nsub; s0 += W)
        {
            for (int i = 0; i < n; i++)
            {
                for (int k = 0; k < W; k++) lane[k] = x[(s0 + k) * n + i];
                xt[i] = Unsafe.ReadUnaligned<Vector<float>>(lane);
                ww[i] = xt[i] * xt[i];
            }
            var max = Vector<float>.Zero;
            var amax = Vector<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                var ax = Vector.Abs(xt[i]);
                var more = Vector.GreaterThan(ax, amax);
                amax = Vector.ConditionalSelect(more, ax, amax);
                max = Vector.ConditionalSelect(more, xt[i], max);
            }
            var zero = Vector.LessThan(amax, new Vector<float>(GroupMaxEps));

            var d = -max / g[0];
            var id = Vector<float>.One / d;
            Vector<float> sumQX = Vector<float>.Zero, sumQ2 = Vector<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                var q = GridValue(id * xt[i], g);
                var wq = ww[i] * q;
                sumQX += wq * xt[i];
                sumQ2 += wq * q;
            }
            d = Vector.ConditionalSelect(Vector.GreaterThan(sumQ2, Vector<float>.Zero), sumQX / sumQ2, Vector<float>.Zero);
            var best = d * sumQX;
            for (int itry = -ntry; itry <= ntry; itry++)
            {
                id = new Vector<float>(itry + grid[0]) / max;
                sumQX = Vector<float>.Zero;
                sumQ2 = Vector<float>.Zero;
                for (int i = 0; i < n; i++)
                {
                    var q = GridValue(id * xt[i], g);
                    var wq = ww[i] * q;
                    sumQX += wq * xt[i];
                    sumQ2 += wq * q;
                }
                var win = Vector.BitwiseAnd(Vector.GreaterThan(sumQ2, Vector<float>.Zero), Vector.GreaterThan(sumQX * sumQX, best * sumQ2));
                d = Vector.ConditionalSelect(win, sumQX / sumQ2, d);
                best = Vector.ConditionalSelect(win, d * sumQX, best);
            }
            Unsafe.WriteUnaligned(lane, Vector.ConditionalSelect(zero, Vector<float>.Zero, d));
            for (int k = 0; k < W; k++) scales[s0 + k] = lane[k];
        }
        return true;
    }

    /// <summary>
    /// The grid value ggml's <c>best_index_int8</c> picks for each lane: grid[0] at or below it, grid[15] at or
    /// above it (and for NaN, where the binary search also ends at 15), else of the two neighbours around v the
    /// lower one only when strictly nearer (<c>v − lo &lt; hi − v</c>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> GridValue(Vector<float> v, Vector<float>* g)
    {
        var lo = g[0];
        var hi = g[1];
        for (int k = 1; k < 15; k++)
        {
            var above = Vector.LessThanOrEqual(g[k], v);
            lo = Vector.ConditionalSelect(above, g[k], lo);
            hi = Vector.ConditionalSelect(above, g[k + 1], hi);
        }
        var q = Vector.ConditionalSelect(Vector.LessThan(v - lo, hi - v), lo, hi);
        q = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(v, g[15]), g[15], q);
        q = Vector.ConditionalSelect(Vector.LessThanOrEqual(v, g[0]), g[0], q);
        return Vector.ConditionalSelect(Vector.Equals(v, v), q, g[15]);
    }

    /// <summary>
    /// The final pass of the K-quant reference quantizers, element by element (so lanes change nothing):
    /// <c>L[i] = clamp(nearest_int((x[i] + offset) / divisor), lo, hi) + bias</c>, or without the addition when
    /// <paramref name="addOffset"/> is false (Q6_K divides x itself).
    /// </summary>
    public static void Requantize(float* x, byte* L, int n, bool addOffset, float offset, float divisor, int lo, int hi, int bias)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int W = Vector<float>.Count;
            int* tmp = stackalloc int[Vector<int>.Count];
            var vOff = new Vector<float>(offset);
            var vDiv = new Vector<float>(divisor);
            var vLo = new Vector<int>(lo);
            var vHi = new Vector<int>(hi);
            var vBias = new Vector<int>(bias);
            for (; i + W <= n; i += W)
            {
                var v = Unsafe.ReadUnaligned<Vector<float>>(x + i);
                if (addOffset) v += vOff;
                var l = Vector.Min(vHi, Vector.Max(vLo, NearestInt(v / vDiv))) + vBias;
                Unsafe.WriteUnaligned(tmp, l);
                for (int k = 0; k < W; k++) L[i + k] = (byte)tmp[k];
            }
        }
        for (; i < n; i++)
        {
            float v = addOffset ? x[i] + offset : x[i];
            L[i] = (byte)(Math.Clamp(QuantMath.NearestInt(v / divisor), lo, hi) + bias);
        }
    }

    /// <summary><see cref="QuantMath.NearestInt"/> per lane (same add-1.5·2^23 trick, same bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<int> NearestInt(Vector<float> v)
    {
        var shifted = v + new Vector<float>(12582912f);
        return (Vector.AsVectorInt32(shifted) & new Vector<int>(0x007fffff)) - new Vector<int>(0x00400000);
    }

    /// <summary>
    /// ggml's <c>make_qkx2_quants</c>: fits x ≈ scale·L + min with L in 0..nmax and min ≤ 0 by weighted least squares
    /// over nstep+1 trial inverse scales (rmin + rdelta·step + nmax)/(max − min), keeping the one with the smallest
    /// weighted error (squared, or absolute when <paramref name="useMad"/>); returns the scale and −min through
    /// <paramref name="theMin"/>.
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, float* x, float* weights, byte* L, out float theMin,
        byte* laux, float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0f) min = 0f;
        if (max == min)
        {
            for (int i = 0; i < n; i++) L[i] = 0;
            theMin = -min;
            return 0f;
        }

        float iscale = nmax / (max - min);
        float scale = 1f / iscale;
        float bestError = 0f;
        for (int i = 0; i < n; i++)
        {
            int l = QuantMath.NearestInt(iscale * (x[i] - min));
            L[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * L[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }

        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0f, sumL2 = 0f, sumXL = 0f;
            for (int i = 0; i < n; i++)
            {
                int l = QuantMath.NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0f)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0f)
                {
                    thisMin = 0f;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0f;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * laux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    curError += weights[i] * diff;
                }
                if (curError < bestError)
                {
                    for (int i = 0; i < n; i++) L[i] = laux[i];
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// ggml's <c>make_q3_quants</c> with do_rmse: symmetric quantization to −nmax..nmax−1 starting from the inverse
    /// scale −nmax/max (max = the signed value of largest magnitude), then up to five passes that move single L
    /// values while that raises the x²-weighted fit (Σwxl)²/Σwl². L is returned offset by nmax; the result is the
    /// least-squares scale Σwxl/Σwl² (0 for an all-zero group).
    /// </summary>
    public static float MakeQ3Quants(int n, int nmax, float* x, sbyte* L)
    {
        float max = 0f, amax = 0f;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; i++) L[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        float sumLX = 0f, sumL2 = 0f;
        for (int i = 0; i < n; i++)
        {
            int l = QuantMath.NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumLX += w * x[i] * l;
            sumL2 += w * l * l;
        }
        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = x[i] * x[i];
                float slx = sumLX - w * x[i] * L[i];
                if (slx > 0f)
                {
                    float sl2 = sumL2 - w * L[i] * L[i];
                    int newL = QuantMath.NearestInt(x[i] * sl2 / slx);
                    newL = Math.Max(-nmax, Math.Min(nmax - 1, newL));
                    if (newL != L[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0f && slx * slx * sumL2 > sumLX * sumLX * sl2)
                        {
                            L[i] = (sbyte)newL;
                            sumLX = slx;
                            sumL2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        for (int i = 0; i < n; i++) L[i] += (sbyte)nmax;
        return sumL2 > 0f ? sumLX / sumL2 : 0f;
    }

    /// <summary>The scalar port of <c>make_qx_quants</c> (rmse_type 1, no importance weights).</summary>
    internal static float ScalarQx(int n, int nmax, float* x, sbyte* L)
    {
        float max = 0f, amax = 0f;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; i++) L[i] = 0;
            return 0f;
        }

        float iscale = -nmax / max;
        float sumLX = 0f, sumL2 = 0f;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, QuantMath.NearestInt(iscale * x[i])));
            L[i] = (sbyte)(l + nmax);
            float w = x[i] * x[i];
            sumLX += w * x[i] * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0f ? sumLX / sumL2 : 0f;
        float best = scale * sumLX;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumLX = 0f;
            sumL2 = 0f;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(-nmax, Math.Min(nmax - 1, QuantMath.NearestInt(iscale * x[i])));
                float w = x[i] * x[i];
                sumLX += w * x[i] * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0f && sumLX * sumLX > best * sumL2)
            {
                for (int i = 0; i < n; i++)
                {
                    int l = QuantMath.NearestInt(iscale * x[i]);
                    L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }
}
