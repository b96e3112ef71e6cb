using System.Runtime.CompilerServices;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.ModelGen;

/// <summary>
/// Draws the bytes of one tensor straight in its block format: random quants and random 6-bit or 8-bit
/// sub-scales, with an fp16 block scale d chosen so the weights have standard deviation <see cref="Sigma"/>
/// (jittered ±25% per block). Nothing is quantized from floats, which is what makes a 7B file take seconds.
/// Layouts (field-notes, ggml): Q4_0 = {d, 16 nibble bytes}, q−8; Q8_0 = {d, 32 int8}, kept in [−127, 127]
/// as ggml's quantizer writes; Q4_K = {d, dmin, 12 packed scale/min bytes, 128 nibble bytes}, w = d·sc·q −
/// dmin·m, with dmin = 8d and m ≈ 15·sc/16 so each sub-block is centred; Q6_K = {ql[128], qh[64], int8
/// scales[16], d}, w = d·scale·(q − 32). F32/F16 are uniform in ±σ√3. Norm vectors are 1 ± 0.2. Every other type
/// of <see cref="TypeTraits"/> (BF16, and the types without a filler here) is drawn uniform in ±σ√3 and quantized
/// by its row's reference quantizer: slower, but any type the engine computes can be written.
/// </summary>
public sealed unsafe class RandomBlocks
{
    private const int Levels = 64; // block scales come from a table of 64 values, picked by 6 random bits

    public GgmlType Type { get; }
    public double Sigma { get; }
    public bool IsNorm { get; }

    private readonly ushort[] _d = new ushort[Levels];
    private readonly ushort[] _dmin = new ushort[Levels];
    private readonly float _amplitude;

    public RandomBlocks(GgmlType type, double sigma, bool isNorm = false)
    {
        if (!IsSupported(type)) throw new ArgumentException($"cannot draw random {GgmlTypes.Name(type)} blocks");
        if (isNorm && type != GgmlType.F32) throw new ArgumentException("norm vectors are F32");
        Type = type;
        Sigma = sigma;
        IsNorm = isNorm;
        _amplitude = (float)(sigma * Math.Sqrt(3));
        // RMS of the integer part of a weight for each format (uniform quants times uniform sub-scales).
        double unit = type switch
        {
            GgmlType.Q4_0 => Math.Sqrt(21.5),                     // q − 8, q uniform in 0..15
            GgmlType.Q8_0 => Math.Sqrt((255.0 * 255 - 1) / 12),  // uniform in −127..127
            GgmlType.Q4_K => Math.Sqrt(255.0 / 12) * 48.39,       // (q − 7.5)·sc, sc uniform in 32..63
            GgmlType.Q6_K => Math.Sqrt(341.5) * 73.9,             // (q − 32)·scale, scale uniform int8
            _ => 1,
        };
        for (int i = 0; i < Levels; i++)
        {
            double d = sigma / unit * (0.75 + 0.5 * i / (Levels - 1));
            _d[i] = BitConverter.HalfToUInt16Bits((Half)d);
            _dmin[i] = BitConverter.HalfToUInt16Bits((Half)(8 * (double)(float)(Half)d));
        }
    }

    /// <summary>Every type with a <see cref="TypeTraits"/> row.</summary>
    public static bool IsSupported(GgmlType t) => TypeTraits.Of(t) is not null;

    /// <summary>Writes <paramref name="blocks"/> blocks (elements for F32/F16) at <paramref name="dst"/> from a generator seeded with <paramref name="seed"/>.</summary>
    public void Fill(byte* dst, long blocks, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        switch (Type)
        {
            case GgmlType.F32: FillF32(dst, blocks, ref rng); break;
            case GgmlType.F16: FillF16(dst, blocks, ref rng); break;
            case GgmlType.Q4_0: FillQ4_0(dst, blocks, ref rng); break;
            case GgmlType.Q8_0: FillQ8_0(dst, blocks, ref rng); break;
            case GgmlType.Q4_K: FillQ4_K(dst, blocks, ref rng); break;
            case GgmlType.Q6_K: FillQ6_K(dst, blocks, ref rng); break;
            default: FillThroughTable(dst, blocks, ref rng); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<T>(byte* p, T v) where T : unmanaged => Unsafe.WriteUnaligned(p, v);

    /// <summary>A uniform value in [−1, 1) from 24 random bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Signed24(uint bits) => (bits >> 8) * (2f / (1 << 24)) - 1f;

    private void FillF32(byte* dst, long n, ref Xoshiro256 rng)
    {
        float* f = (float*)dst;
        float center = IsNorm ? 1f : 0f, amp = IsNorm ? 0.2f : _amplitude;
        for (long i = 0; i < n; i += 2)
        {
            ulong r = rng.NextUInt64();
            f[i] = center + amp * Signed24((uint)r);
            if (i + 1 < n) f[i + 1] = center + amp * Signed24((uint)(r >> 32));
        }
    }

    private void FillF16(byte* dst, long n, ref Xoshiro256 rng)
    {
        ushort* h = (ushort*)dst;
        for (long i = 0; i < n; i += 2)
        {
            ulong r = rng.NextUInt64();
            h[i] = BitConverter.HalfToUInt16Bits((Half)(_amplitude * Signed24((uint)r)));
            if (i + 1 < n) h[i + 1] = BitConverter.HalfToUInt16Bits((Half)(_amplitude * Signed24((uint)(r >> 32))));
        }
    }

    private void FillQ4_0(byte* p, long blocks, ref Xoshiro256 rng)
    {
        for (long b = 0; b < blocks; b++, p += 18)
        {
            ulong r = rng.NextUInt64();
            ushort d = _d[r & (Levels - 1)];
            if ((r & Levels) != 0) d |= 0x8000; // ggml's Q4_0 d takes the sign of the block's extreme value
            Put(p, d);
            Put(p + 2, rng.NextUInt64());
            Put(p + 10, rng.NextUInt64());
        }
    }

    private void FillQ8_0(byte* p, long blocks, ref Xoshiro256 rng)
    {
        for (long b = 0; b < blocks; b++, p += 34)
        {
            Put(p, _d[rng.NextUInt64() & (Levels - 1)]);
            for (int k = 0; k < 4; k++) Put(p + 2 + 8 * k, No128(rng.NextUInt64()));
        }
    }

    /// <summary>Turns every byte 0x80 (−128) into 0x81 (−127): exact SWAR zero-byte test on x ^ 0x80...</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong No128(ulong x)
    {
        const ulong Low7 = 0x7F7F7F7F7F7F7F7FUL;
        ulong t = x ^ 0x8080808080808080UL;
        ulong zero = ~(((t & Low7) + Low7) | t | Low7); // 0x80 in each byte of t that is zero
        return x | (zero >> 7);
    }

    private void FillQ4_K(byte* p, long blocks, ref Xoshiro256 rng)
    {
        byte* sc = stackalloc byte[8];
        byte* m = stackalloc byte[8];
        for (long b = 0; b < blocks; b++, p += 144)
        {
            ulong r = rng.NextUInt64();
            int level = (int)(r >> 58);
            Put(p, _d[level]);
            Put(p + 2, _dmin[level]);
            for (int j = 0; j < 8; j++)
            {
                int s = 32 | (int)((r >> (5 * j)) & 31);
                int jitter = (int)((r >> (40 + 2 * j)) & 3) switch { 0 => -1, 3 => 1, _ => 0 };
                sc[j] = (byte)s;
                m[j] = (byte)Math.Clamp((15 * s + 8) / 16 + jitter, 0, 63);
            }
            PackScaleMin(sc, m, p + 4);
            for (int k = 0; k < 16; k++) Put(p + 16 + 8 * k, rng.NextUInt64());
        }
    }

    /// <summary>
    /// Packs eight 6-bit scales and mins into Q4_K's 12 bytes, the inverse of ggml's get_scale_min_k4:
    /// j &lt; 4 in the low 6 bits of bytes j and j+4; j ≥ 4 low nibbles in byte j+4, top 2 bits in bytes j−4 and j.
    /// </summary>
    internal static void PackScaleMin(byte* sc, byte* m, byte* dst)
    {
        for (int j = 0; j < 4; j++)
        {
            dst[j] = (byte)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            dst[j + 4] = (byte)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
            dst[j + 8] = (byte)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
        }
    }

    private void FillQ6_K(byte* p, long blocks, ref Xoshiro256 rng)
    {
        for (long b = 0; b < blocks; b++, p += 210)
        {
            for (int k = 0; k < 24; k++) Put(p + 8 * k, rng.NextUInt64()); // ql[128], qh[64]
            Put(p + 192, rng.NextUInt64());                               // scales[16]
            Put(p + 200, rng.NextUInt64());
            Put(p + 208, _d[rng.NextUInt64() & (Levels - 1)]);
        }
    }

    /// <summary>Uniform floats in ±σ√3, quantized a few blocks at a time by the type's reference quantizer.</summary>
    private void FillThroughTable(byte* dst, long blocks, ref Xoshiro256 rng)
    {
        var row = TypeTraits.Of(Type)!;
        int bs = row.BlockSize, bb = row.BlockBytes;
        int step = Math.Max(1, 4096 / bs);
        var f = new float[step * bs];
        fixed (float* pf = f)
        {
            for (long b = 0; b < blocks; b += step)
            {
                int k = (int)Math.Min(step, blocks - b);
                for (int i = 0; i < k * bs; i += 2)
                {
                    ulong r = rng.NextUInt64();
                    pf[i] = _amplitude * Signed24((uint)r);
                    if (i + 1 < k * bs) pf[i + 1] = _amplitude * Signed24((uint)(r >> 32));
                }
                row.Quantize(pf, dst + b * bb, (long)k * bs);
            }
        }
    }
}
