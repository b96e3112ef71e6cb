using EdgeLlm.Gguf;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// The weight layout kernels/matvec_packed.cu reads: each row of ggml blocks rewritten at upload so that every
/// field of the row's blocks lies in its own array (quants with 16-byte loads, scales apart), the row padded to
/// 16 bytes. The layouts are described at the top of matvec_packed.cu. Types not listed here keep ggml's blocks
/// and matmul.cu's kernels; so does a weight read in place from the mapped file (integrated GPUs).
/// </summary>
internal static class CudaRepack
{
    /// <summary>The weight types repacked at upload.</summary>
    public static readonly GgmlType[] Types =
    [
        GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL,
        GgmlType.Q5_K, GgmlType.IQ4_XS, GgmlType.Q2_K, GgmlType.Q3_K,
    ];

    public static bool Packs(GgmlType t) => Array.IndexOf(Types, t) >= 0;

    /// <summary>Bytes of one packed row of <paramref name="k"/> weights: ggml's row size rounded up to 16.</summary>
    public static long RowBytes(GgmlType t, long k) => (GgmlTypes.RowBytes(t, k) + 15) & ~15L;

    /// <summary>
    /// Warps per row of the packed product for a matrix of <paramref name="rows"/> rows of <paramref name="k"/>
    /// weights: few long rows (K/V projections, 1024 x 8192 on 70B) split across 4 or 2 warps of a block so that
    /// the grid fills the device, while every lane still takes at least two 32-weight blocks. A function of the
    /// shape only, so a row's result does not depend on the device or the batch.
    /// </summary>
    public static int WarpsPerRow(long rows, long k)
    {
        long blocks = k / 32;
        if (rows <= 2048 && blocks >= 4 * 32 * 2) return 4;
        if (rows <= 4096 && blocks >= 2 * 32 * 2) return 2;
        return 1;
    }

    /// <summary>Rewrites one ggml row of <paramref name="k"/> weights of type <paramref name="t"/> into the packed layout.</summary>
    public static void PackRow(GgmlType t, long k, ReadOnlySpan<byte> src, Span<byte> dst)
    {
        long raw = GgmlTypes.RowBytes(t, k), packed = RowBytes(t, k);
        if (src.Length < raw || dst.Length < packed)
            throw new ArgumentException($"repack of a {GgmlTypes.Name(t)} row of {k}: {src.Length} source and {dst.Length} destination bytes, need {raw} and {packed}");
        int nb = (int)(k / 32);
        dst[(int)raw..(int)packed].Clear();
        switch (t)
        {
            case GgmlType.Q4_0:
                for (int b = 0; b < nb; b++)
                {
                    var blk = src.Slice(b * 18, 18);
                    blk.Slice(2, 16).CopyTo(dst.Slice(16 * b, 16));
                    blk[..2].CopyTo(dst.Slice(16 * nb + 2 * b, 2));
                }
                break;
            case GgmlType.Q8_0:
                for (int b = 0; b < nb; b++)
                {
                    var blk = src.Slice(b * 34, 34);
                    blk.Slice(2, 32).CopyTo(dst.Slice(32 * b, 32));
                    blk[..2].CopyTo(dst.Slice(32 * nb + 2 * b, 2));
                }
                break;
            case GgmlType.Q4_K:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    var blk = src.Slice(sb * 144, 144);
                    blk[..16].CopyTo(dst.Slice(16 * nb + 16 * sb, 16)); // d, dmin, the 12 scale bytes
                    for (int s = 0; s < 8; s++)
                    {
                        // sub-block s: the low (even s) or high (odd s) nibbles of the 32 bytes of chunk s / 2
                        var chunk = blk.Slice(16 + 32 * (s >> 1), 32);
                        int shift = 4 * (s & 1);
                        var o = dst.Slice(16 * (8 * sb + s), 16);
                        for (int j = 0; j < 16; j++)
                            o[j] = (byte)(((chunk[j] >> shift) & 0xF) | (((chunk[16 + j] >> shift) & 0xF) << 4));
                    }
                }
                break;
            case GgmlType.Q6_K:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    var blk = src.Slice(sb * 210, 210);
                    blk.Slice(208, 2).CopyTo(dst.Slice(26 * nb + 2 * sb, 2));
                    for (int g = 0; g < 8; g++)
                    {
                        int b = 8 * sb + g, half = g >> 2, quarter = g & 3;
                        var ql = blk.Slice(64 * half + 32 * (quarter & 1), 32);
                        var qh = blk.Slice(128 + 32 * half, 32);
                        int shl = 4 * (quarter >> 1), shh = 2 * quarter;
                        var lo = dst.Slice(16 * b, 16);
                        var hi = dst.Slice(16 * nb + 8 * b, 8);
                        hi.Clear();
                        for (int w = 0; w < 32; w++)
                        {
                            int q4 = (ql[w] >> shl) & 0xF, q2 = (qh[w] >> shh) & 3;
                            int j = w & 15;
                            if (w < 16) lo[j] = (byte)q4;
                            else lo[j] |= (byte)(q4 << 4);
                            // high bits: word w / 16, byte j % 4, bits 2 (j / 4)
                            hi[4 * (w >> 4) + (j & 3)] |= (byte)(q2 << (2 * (j >> 2)));
                        }
                        dst[24 * nb + 2 * b] = blk[192 + 2 * g];
                        dst[24 * nb + 2 * b + 1] = blk[192 + 2 * g + 1];
                    }
                }
                break;
            case GgmlType.Q4_1:
            case GgmlType.Q5_0:
            case GgmlType.Q5_1:
            case GgmlType.IQ4_NL:
                // ggml: [fp16 d][fp16 m (Q4_1, Q5_1)][u32 qh (Q5_0, Q5_1)][16 B nibbles]; packed: the nibbles, then
                // the fifth-bit words, then the scales (d, or d and m)
                int scaleBytes = t is GgmlType.Q4_1 or GgmlType.Q5_1 ? 4 : 2;
                int highBytes = t is GgmlType.Q5_0 or GgmlType.Q5_1 ? 4 : 0;
                int blockBytes = scaleBytes + highBytes + 16;
                for (int b = 0; b < nb; b++)
                {
                    var blk = src.Slice(b * blockBytes, blockBytes);
                    blk.Slice(scaleBytes + highBytes, 16).CopyTo(dst.Slice(16 * b, 16));
                    blk.Slice(scaleBytes, highBytes).CopyTo(dst.Slice(16 * nb + highBytes * b, highBytes));
                    blk[..scaleBytes].CopyTo(dst.Slice((16 + highBytes) * nb + scaleBytes * b, scaleBytes));
                }
                break;
            case GgmlType.Q5_K:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    var blk = src.Slice(sb * 176, 176);
                    blk[..16].CopyTo(dst.Slice(20 * nb + 16 * sb, 16)); // d, dmin, the 12 scale bytes
                    var qh = blk.Slice(16, 32);
                    for (int s = 0; s < 8; s++)
                    {
                        var chunk = blk.Slice(48 + 32 * (s >> 1), 32);
                        int shift = 4 * (s & 1);
                        var o = dst.Slice(16 * (8 * sb + s), 16);
                        for (int j = 0; j < 16; j++)
                            o[j] = (byte)(((chunk[j] >> shift) & 0xF) | (((chunk[16 + j] >> shift) & 0xF) << 4));
                        uint bits = 0; // bit l: the fifth bit of weight l of sub-block s (bit s of ggml's qh[l])
                        for (int l = 0; l < 32; l++) bits |= (uint)((qh[l] >> s) & 1) << l;
                        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(dst.Slice(16 * nb + 4 * (8 * sb + s), 4), bits);
                    }
                }
                break;
            case GgmlType.IQ4_XS:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    var blk = src.Slice(sb * 136, 136);
                    blk[..8].CopyTo(dst.Slice(16 * nb + 8 * sb, 8)); // d, scales_h, scales_l
                    blk.Slice(8, 128).CopyTo(dst.Slice(16 * 8 * sb, 128));
                }
                break;
            case GgmlType.Q2_K:
            case GgmlType.Q3_K:
                bool q3 = t == GgmlType.Q3_K;
                int sbBytes = q3 ? 110 : 84, qsAt = q3 ? 32 : 16;
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    var blk = src.Slice(sb * sbBytes, sbBytes);
                    if (q3)
                    {
                        blk.Slice(96, 12).CopyTo(dst.Slice(12 * nb + 12 * sb, 12)); // the 12 scale bytes
                        blk.Slice(108, 2).CopyTo(dst.Slice(13 * nb + nb / 2 + 2 * sb, 2)); // d
                    }
                    else
                    {
                        blk.Slice(80, 4).CopyTo(dst.Slice(10 * nb + 4 * sb, 4)); // d, dmin
                    }
                    for (int g = 0; g < 8; g++)
                    {
                        int b = 8 * sb + g, half = g >> 2, field = g & 3;
                        var crumbs = dst.Slice(8 * b, 8);
                        crumbs.Clear();
                        uint high = 0;
                        for (int w = 0; w < 32; w++)
                        {
                            int q = (blk[qsAt + 32 * half + w] >> (2 * field)) & 3;
                            int j = w & 15;
                            crumbs[4 * (w >> 4) + (j & 3)] |= (byte)(q << (2 * (j >> 2)));
                            if (q3) high |= (uint)((blk[w] >> (4 * half + field)) & 1) << w;
                        }
                        if (q3) System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(dst.Slice(8 * nb + 4 * b, 4), high);
                        else blk.Slice(2 * g, 2).CopyTo(dst.Slice(8 * nb + 2 * b, 2)); // this group's two scale bytes
                    }
                }
                break;
            default:
                throw new ArgumentException($"{GgmlTypes.Name(t)} weights are not repacked for CUDA");
        }
    }
}
