using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.CudaPackedMatVec;

/// <summary>
/// The repacked weight layout (CudaRepack) and kernels/matvec_packed.cu, without a GPU:
/// <list type="bullet">
/// <item>the repack is a permutation of ggml's bytes: an independent inverse written here gives the source row back
/// byte for byte, and the padding is zero;</item>
/// <item>get_rows_packed_&lt;type&gt; (host-emulated, packed_harness.cpp) dequantizes the packed rows to exactly the
/// CPU reference's dequantization of the ggml rows;</item>
/// <item>matvec_packed_&lt;type&gt;_t1/_t8 with 1, 2 and 4 warps per row, on row counts that are not multiples of the
/// rows per block, short rows (fewer blocks than lanes), long rows (a partial last round of lanes) and the
/// 70B K/V shape (8192-weight rows, 4 warps per row), against the double-precision sum of the reference
/// dequantized weights times the same 8-bit activations; with one warp per row bit-identical to matmul.cu's
/// kernel on the ggml rows; NT=1 and NT=8 bit-identical; the residual-add epilogue (dst += W x) bit-identical to
/// the product followed by add_f32;</item>
/// <item>NVRTC: the hot loop of every packed product reads weights and activations with 16-byte loads
/// (ld.global[.nc].v4) and ptxas reports no spills on sm_61, sm_87 and sm_90.</item>
/// </list>
/// </summary>
public partial class PackedMatVecTests
{
    public static TheoryData<GgmlType> Types()
    {
        var d = new TheoryData<GgmlType>();
        foreach (var t in CudaRepack.Types) d.Add(t);
        return d;
    }

    /// <summary>type, K, rows, tokens, NT, warps per row.</summary>
    public static TheoryData<GgmlType, int, int, int, int, int> Shapes()
    {
        var d = new TheoryData<GgmlType, int, int, int, int, int>();
        foreach (var t in CudaRepack.Types)
        {
            d.Add(t, 256, 5, 3, 1, 1);     // 8 blocks: most lanes idle
            d.Add(t, 256, 6, 11, 8, 2);    // a second round of 8 tokens, 3 of them live
            d.Add(t, 2048, 9, 1, 1, 1);    // 9 rows: a partial thread block
            d.Add(t, 4096, 7, 2, 1, 2);    // 7 rows at 2 per block
            d.Add(t, 8192, 6, 1, 1, 4);    // the 70B K/V shape: one row per block of 4 warps
            d.Add(t, 8192, 5, 9, 8, 4);
            d.Add(t, 11008, 3, 1, 1, 1);   // 344 blocks: the last round of lanes partial
            d.Add(t, 11008, 5, 2, 1, 2);
        }
        return d;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void RepackIsAPermutationOfTheGgmlRow(GgmlType type)
    {
        foreach (int k in new[] { 256, 512, 11008 })
        {
            var src = RandomRows(type, k, 1, new Random(k + (int)type));
            long packedBytes = CudaRepack.RowBytes(type, k);
            Assert.Equal(0, packedBytes % 16);
            Assert.True(packedBytes - src.Length is >= 0 and < 16);
            var packed = new byte[packedBytes];
            Array.Fill(packed, (byte)0xA5); // the padding must be written too
            CudaRepack.PackRow(type, k, src, packed);
            Assert.Equal(src, Unpack(type, k, packed));
            Assert.All(packed[src.Length..], b => Assert.Equal(0, b));
        }
    }

    [Fact]
    public void TypesWithoutAPackedLayoutAreRefused()
    {
        Assert.False(CudaRepack.Packs(GgmlType.F16));
        Assert.Throws<ArgumentException>(() => CudaRepack.PackRow(GgmlType.F16, 256, new byte[512], new byte[512]));
        Assert.Throws<ArgumentException>(() => CudaRepack.PackRow(GgmlType.Q4_0, 64, new byte[35], new byte[48]));
    }

    [Theory]
    [InlineData(1024, 8192, 4)]   // 70B K/V projections
    [InlineData(8192, 8192, 1)]   // 70B Q/O
    [InlineData(28672, 8192, 1)]  // 70B gate/up
    [InlineData(4096, 4096, 2)]   // 7B Q/K/V/O
    [InlineData(1024, 4096, 2)]   // 7B GQA K/V (Mistral): 128 blocks, 2 warps keep 2 blocks per lane
    [InlineData(4096, 11008, 2)]  // 7B down
    [InlineData(11008, 4096, 1)]  // 7B gate/up
    [InlineData(32000, 4096, 1)]  // output
    [InlineData(256, 2048, 1)]    // short rows stay one warp each
    public void FewLongRowsAreSplitAcrossWarps(int rows, int k, int expected) => Assert.Equal(expected, CudaRepack.WarpsPerRow(rows, k));

    [HostCompilerTheory]
    [MemberData(nameof(Types))]
    public void PackedGetRowsEqualsTheReferenceDequantization(GgmlType type)
    {
        const int k = 512, rows = 5;
        var raw = RandomRows(type, k, rows, new Random(40 + (int)type));
        var packed = Pack(type, k, rows, raw);
        var input = new MemoryStream();
        WriteName(input, "get_rows");
        WriteName(input, CudaKernels.Suffix(type)!);
        input.Write(BitConverter.GetBytes(k));
        input.Write(BitConverter.GetBytes(rows));
        input.Write(BitConverter.GetBytes(CudaRepack.RowBytes(type, k)));
        input.Write(packed);
        var got = MemoryMarshal.Cast<byte, float>(PackedHarness.Exec(input, $"get_rows {type}")).ToArray();
        Assert.Equal(Dequantize(type, raw, (long)k * rows), got);
    }

    [HostCompilerTheory]
    [MemberData(nameof(Shapes))]
    public void PackedMatVecMatchesTheReferenceDot(GgmlType type, int k, int rows, int tokens, int nt, int wpr)
    {
        var rng = new Random(k * 31 + rows * 7 + tokens + (int)type);
        var raw = RandomRows(type, k, rows, rng);
        var packed = Pack(type, k, rows, raw);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 97 == 0 ? 8f : 1f);

        var r = RunMatVec(type, k, rows, tokens, nt, wpr, packed, raw, x);
        var w = Dequantize(type, raw, (long)k * rows);
        int nb = k / 32;
        for (int t = 0; t < tokens; t++)
            for (int row = 0; row < rows; row++)
            {
                double want = 0, scale = 0;
                for (int b = 0; b < nb; b++)
                {
                    float dx = r.Dx[t * nb + b];
                    for (int i = 0; i < 32; i++)
                    {
                        double p = (double)w[(long)row * k + b * 32 + i] * r.Xq[(long)t * k + b * 32 + i] * dx;
                        want += p;
                        scale += Math.Abs(p);
                    }
                }
                float got = r.Packed[t * rows + row];
                Assert.True(Math.Abs(got - want) <= 2e-5 * scale, $"{type} K={k} wpr={wpr} NT={nt} token {t} row {row}: packed matvec {got}, reference {want} (sum of |products| {scale})");
            }
        if (wpr == 1) Assert.Equal(r.Raw, r.Packed); // one warp per row: matmul.cu's loop and block arithmetic exactly
        var other = RunMatVec(type, k, rows, tokens, nt == 1 ? 8 : 1, wpr, packed, raw, x);
        Assert.Equal(r.Packed, other.Packed);
        // The residual epilogue (r += W x, the Wo and ffn_down products of a decode step): bit for bit the product
        // followed by add_f32's float addition (x + y, rounded once), for every type, NT and warps per row.
        for (int i = 0; i < r.Added.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(r.Residual[i] + r.Packed[i]) == BitConverter.SingleToInt32Bits(r.Added[i]),
                $"{type} K={k} wpr={wpr} NT={nt} element {i}: epilogue {r.Added[i]}, product then add {r.Residual[i] + r.Packed[i]}");
        Assert.Contains(r.Residual, v => v != 0f);
    }

    /// <summary>
    /// The norm epilogue (residual 2: the Wo / ffn_down product of a decode step adds into the residual, and the
    /// block counted last writes the next RMSNorm and its q8 quantization): bit for bit the product with the residual
    /// epilogue followed by add_rmsnorm_q8_f32 (no add, 256 threads), for every type and 1, 2 and 4 warps per row;
    /// the counter is back at zero. Not vacuous: the norm is the float64 formula to float rounding.
    /// </summary>
    [HostCompilerTheory]
    [MemberData(nameof(NormShapes))]
    public void NormEpilogueEqualsProductThenAddRmsNormQ8(GgmlType type, int k, int rows, int wpr)
    {
        var rng = new Random(k + rows * 3 + wpr + (int)type);
        var raw = RandomRows(type, k, rows, rng);
        var packed = Pack(type, k, rows, raw);
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var input = new MemoryStream();
        WriteName(input, "matvec_norm");
        WriteName(input, CudaKernels.Suffix(type)!);
        foreach (int v in new[] { k, rows, 1, 1, wpr }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes(CudaRepack.RowBytes(type, k)));
        input.Write(packed);
        input.Write(BitConverter.GetBytes(GgmlTypes.RowBytes(type, k)));
        input.Write(raw);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = PackedHarness.Exec(input, $"matvec_norm {type} K={k} rows={rows} wpr={wpr}");
        int quantBytes = k / 32 * 36, run = rows * 4 * 2 + rows + rows / 32 * 8 + 4;
        Assert.Equal(quantBytes + 2 * run, bytes.Length);
        var fused = bytes.AsSpan(quantBytes, run);
        var plain = bytes.AsSpan(quantBytes + run, run);
        int first = -1;
        for (int i = 0; i < run && first < 0; i++) if (fused[i] != plain[i]) first = i;
        Assert.True(first < 0, $"{type} wpr={wpr}: the norm epilogue and the product + add_rmsnorm_q8_f32 differ first at byte {first} of {run}");
        Assert.Equal(0, BitConverter.ToInt32(fused[^4..]));
        var sum = MemoryMarshal.Cast<byte, float>(plain[..(rows * 4)]);
        var norm = MemoryMarshal.Cast<byte, float>(plain.Slice(rows * 4, rows * 4));
        double ss = 0;
        for (int i = 0; i < rows; i++) ss += (double)sum[i] * sum[i];
        double scale = 1 / Math.Sqrt(ss / rows + 1e-5);
        for (int i = 0; i < rows; i++)
        {
            double want = sum[i] * scale * (1.0f + 0.01f * (i % 13));
            Assert.True(Math.Abs(norm[i] - want) <= 1e-5 * Math.Max(1, Math.Abs(want)), $"{type} row {i}: norm {norm[i]}, float64 {want}");
        }
    }

    /// <summary>type, K, rows (a multiple of 32), warps per row.</summary>
    public static TheoryData<GgmlType, int, int, int> NormShapes()
    {
        var d = new TheoryData<GgmlType, int, int, int>();
        foreach (var t in CudaRepack.Types)
        {
            d.Add(t, 256, 96, 1);
            d.Add(t, 512, 64, 2);
            d.Add(t, 1024, 32, 4);
        }
        return d;
    }

    [NvrtcTheory]
    [InlineData(61)]
    [InlineData(87)]
    [InlineData(90)]
    public void PackedProductsUse16ByteLoadsAndDoNotSpill(int arch)
    {
        CudaTestEnvironment.RequireNvrtc();
        const string file = "matvec_packed.cu";
        var ptxK = KernelCompileMemo.Compile(file, arch, cubin: false);
        string ptx = Encoding.UTF8.GetString(ptxK.Image).TrimEnd('\0');
        var cubin = KernelCompileMemo.CubinWithPtxasFigures(file, arch);
        foreach (var t in CudaRepack.Types)
            foreach (string nt in new[] { "t1", "t8", "qkv", "glu" }) // qkv and glu: one token, with the stacked products' epilogues
            {
                string entry = $"matvec_packed_{CudaKernels.Suffix(t)}_{nt}";
                string body = EntryBody(ptx, entry);
                // per token two 16-byte activation loads; per block one 16-byte quant load (two for Q8_0, none for the
                // 8-byte Q2_K/Q3_K crumbs) and the Q4_K/Q5_K super-block header
                int v4 = Regex.Matches(body, @"ld\.global(\.nc)?\.v4\.(u32|b32|s32)").Count;
                int tokens = nt == "t8" ? 8 : 1;
                int want = 2 * tokens + (t == GgmlType.Q8_0 ? 2 : 1) + (t is GgmlType.Q4_K or GgmlType.Q5_K ? 1 : 0) - (t is GgmlType.Q2_K or GgmlType.Q3_K ? 1 : 0);
                Assert.True(v4 >= want, $"sm_{arch} {entry}: {v4} 16-byte global loads, want at least {want}");
                if (nt != "qkv") Assert.DoesNotContain("ld.local", body); // (the rope's double sincos may use a local array)
                var (regs, spill) = Figures(cubin.Log, entry);
                Assert.Equal(0, spill);
                Assert.True(regs * 128 <= 65536, $"sm_{arch} {entry}: {regs} registers x 128 threads");
            }
    }

    /// <summary>The PTX of one .entry, from its name to the next .entry (or the end).</summary>
    private static string EntryBody(string ptx, string entry)
    {
        int at = ptx.IndexOf($".entry {entry}(", StringComparison.Ordinal);
        Assert.True(at >= 0, $"no .entry {entry} in the PTX");
        int next = ptx.IndexOf(".entry ", at + 7, StringComparison.Ordinal);
        return next < 0 ? ptx[at..] : ptx[at..next];
    }

    private static (int Registers, int SpillStores) Figures(string log, string entry)
    {
        string head = $"Compiling entry function '{entry}'";
        int at = log.IndexOf(head, StringComparison.Ordinal);
        Assert.True(at >= 0, $"no ptxas figures for {entry} in:\n{log}");
        int next = log.IndexOf("Compiling entry function", at + head.Length, StringComparison.Ordinal);
        string part = next < 0 ? log[at..] : log[at..next];
        var regs = Regex.Match(part, @"Used (\d+) registers");
        var spill = Regex.Match(part, @"(\d+) bytes spill stores");
        Assert.True(regs.Success && spill.Success, $"no register or spill figures for {entry} in:\n{part}");
        return (int.Parse(regs.Groups[1].Value), int.Parse(spill.Groups[1].Value));
    }

    /// <summary>Residual: the harness's r; Added: the product run again with the residual epilogue on a copy of r.</summary>
    private sealed record MatVecResult(float[] Dx, sbyte[] Xq, float[] Packed, float[] Raw, float[] Residual, float[] Added);

    private static MatVecResult RunMatVec(GgmlType type, int k, int rows, int tokens, int nt, int wpr, byte[] packed, byte[] raw, float[] x)
    {
        var input = new MemoryStream();
        WriteName(input, "matvec");
        WriteName(input, CudaKernels.Suffix(type)!);
        foreach (int v in new[] { k, rows, tokens, nt, wpr }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes(CudaRepack.RowBytes(type, k)));
        input.Write(packed);
        input.Write(BitConverter.GetBytes(GgmlTypes.RowBytes(type, k)));
        input.Write(raw);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = PackedHarness.Exec(input, $"matvec {type} K={k} NT={nt} wpr={wpr}");
        int blocks = tokens * k / 32;
        Assert.Equal(blocks * 36 + 4 * tokens * rows * 4, bytes.Length);
        var dx = new float[blocks];
        var xq = new sbyte[tokens * k];
        for (int b = 0; b < blocks; b++)
        {
            dx[b] = BitConverter.ToSingle(bytes, b * 36);
            for (int i = 0; i < 32; i++) xq[b * 32 + i] = (sbyte)bytes[b * 36 + 4 + i];
        }
        int at = blocks * 36;
        var p = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(at, tokens * rows * 4)).ToArray();
        var m = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(at + tokens * rows * 4, tokens * rows * 4)).ToArray();
        var res = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(at + 2 * tokens * rows * 4, tokens * rows * 4)).ToArray();
        var added = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(at + 3 * tokens * rows * 4, tokens * rows * 4)).ToArray();
        return new MatVecResult(dx, xq, p, m, res, added);
    }

    private static void WriteName(Stream s, string name)
    {
        s.Write(Encoding.ASCII.GetBytes(name));
        s.WriteByte(0);
    }

    private static byte[] Pack(GgmlType type, int k, int rows, byte[] raw)
    {
        long rawRow = GgmlTypes.RowBytes(type, k), packedRow = CudaRepack.RowBytes(type, k);
        var packed = new byte[packedRow * rows];
        for (int r = 0; r < rows; r++)
            CudaRepack.PackRow(type, k, raw.AsSpan((int)(r * rawRow), (int)rawRow), packed.AsSpan((int)(r * packedRow), (int)packedRow));
        return packed;
    }

    private static unsafe float[] Dequantize(GgmlType type, byte[] raw, long n)
    {
        var traits = TypeTraits.Of(type)!;
        var w = new float[n];
        fixed (byte* s = raw)
        fixed (float* d = w)
            traits.Dequantize(s, d, n);
        return w;
    }

    /// <summary>Random bytes in every field but the fp16 scales, which are kept finite and moderate (ggml layouts).</summary>
    private static byte[] RandomRows(GgmlType type, int k, int rows, Random rng)
    {
        var (blockElems, blockBytes) = GgmlTypes.Geometry(type);
        var bytes = new byte[rows * (k / blockElems) * blockBytes];
        rng.NextBytes(bytes);
        int[] halves = type switch
        {
            GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q5_0 or GgmlType.IQ4_NL or GgmlType.IQ4_XS => [0],
            GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q4_1 or GgmlType.Q5_1 => [0, 2],
            GgmlType.Q6_K => [208],
            GgmlType.Q3_K => [108],
            GgmlType.Q2_K => [80, 82],
            _ => throw new ArgumentException(type.ToString()),
        };
        for (int b = 0; b < bytes.Length / blockBytes; b++)
            foreach (int at in halves)
            {
                Half h = (Half)((rng.NextDouble() * 0.05 + 0.001) * (rng.Next(2) == 0 ? -1 : 1));
                BitConverter.TryWriteBytes(bytes.AsSpan(b * blockBytes + at, 2), BitConverter.HalfToUInt16Bits(h));
            }
        return bytes;
    }

    /// <summary>
    /// The inverse of CudaRepack.PackRow, written from the layout description in matvec_packed.cu: each ggml field
    /// read back from where the packed row keeps it.
    /// </summary>
    private static byte[] Unpack(GgmlType type, int k, byte[] p)
    {
        int nb = k / 32;
        var raw = new byte[GgmlTypes.RowBytes(type, k)];
        switch (type)
        {
            case GgmlType.Q4_0:
            case GgmlType.Q8_0:
                int q = type == GgmlType.Q4_0 ? 16 : 32;
                for (int b = 0; b < nb; b++)
                {
                    int o = b * (q + 2);
                    raw[o] = p[q * nb + 2 * b];
                    raw[o + 1] = p[q * nb + 2 * b + 1];
                    Array.Copy(p, q * b, raw, o + 2, q);
                }
                break;
            case GgmlType.Q4_K:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    int o = sb * 144;
                    Array.Copy(p, 16 * nb + 16 * sb, raw, o, 16);
                    for (int i = 0; i < 256; i++)
                    {
                        // weight i of the super-block: ggml's chunk i / 64, nibble (i / 32) % 2 of byte i % 32
                        int s = i / 32, w = i % 32;
                        int nib = (p[16 * (8 * sb + s) + (w & 15)] >> (w < 16 ? 0 : 4)) & 0xF;
                        raw[o + 16 + 32 * (i / 64) + w] |= (byte)(nib << (4 * (s & 1)));
                    }
                }
                break;
            case GgmlType.Q6_K:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    int o = sb * 210;
                    raw[o + 208] = p[26 * nb + 2 * sb];
                    raw[o + 209] = p[26 * nb + 2 * sb + 1];
                    for (int g = 0; g < 8; g++)
                    {
                        int b = 8 * sb + g;
                        raw[o + 192 + 2 * g] = p[24 * nb + 2 * b];
                        raw[o + 192 + 2 * g + 1] = p[24 * nb + 2 * b + 1];
                        int half = g / 4, quarter = g % 4;
                        for (int l = 0; l < 32; l++)
                        {
                            int j = l % 16;
                            int lo4 = (p[16 * b + j] >> (l < 16 ? 0 : 4)) & 0xF;
                            int hi2 = (p[16 * nb + 8 * b + 4 * (l / 16) + j % 4] >> (2 * (j / 4))) & 3;
                            raw[o + 64 * half + 32 * (quarter % 2) + l] |= (byte)(lo4 << (4 * (quarter / 2)));
                            raw[o + 128 + 32 * half + l] |= (byte)(hi2 << (2 * quarter));
                        }
                    }
                }
                break;
            case GgmlType.Q4_1:
            case GgmlType.Q5_0:
            case GgmlType.Q5_1:
            case GgmlType.IQ4_NL:
                int sc = type is GgmlType.Q4_1 or GgmlType.Q5_1 ? 4 : 2, hb = type is GgmlType.Q5_0 or GgmlType.Q5_1 ? 4 : 0;
                for (int b = 0; b < nb; b++)
                {
                    int o = b * (sc + hb + 16);
                    Array.Copy(p, (16 + hb) * nb + sc * b, raw, o, sc);       // d (and m)
                    Array.Copy(p, 16 * nb + hb * b, raw, o + sc, hb);         // qh
                    Array.Copy(p, 16 * b, raw, o + sc + hb, 16);              // nibbles
                }
                break;
            case GgmlType.Q5_K:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    int o = sb * 176;
                    Array.Copy(p, 20 * nb + 16 * sb, raw, o, 16);
                    for (int i = 0; i < 256; i++)
                    {
                        int s = i / 32, w = i % 32, b = 8 * sb + s;
                        int nib = (p[16 * b + (w & 15)] >> (w < 16 ? 0 : 4)) & 0xF;
                        raw[o + 48 + 32 * (i / 64) + w] |= (byte)(nib << (4 * (s & 1)));
                        int fifth = (int)(BitConverter.ToUInt32(p, 16 * nb + 4 * b) >> w) & 1;
                        raw[o + 16 + w] |= (byte)(fifth << s);
                    }
                }
                break;
            case GgmlType.IQ4_XS:
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    Array.Copy(p, 16 * nb + 8 * sb, raw, sb * 136, 8);
                    Array.Copy(p, 128 * sb, raw, sb * 136 + 8, 128);
                }
                break;
            case GgmlType.Q2_K:
            case GgmlType.Q3_K:
                bool q3 = type == GgmlType.Q3_K;
                int sbBytes = q3 ? 110 : 84, qsAt = q3 ? 32 : 16;
                for (int sb = 0; sb < nb / 8; sb++)
                {
                    int o = sb * sbBytes;
                    if (q3)
                    {
                        Array.Copy(p, 12 * nb + 12 * sb, raw, o + 96, 12);
                        Array.Copy(p, 13 * nb + nb / 2 + 2 * sb, raw, o + 108, 2);
                    }
                    else Array.Copy(p, 10 * nb + 4 * sb, raw, o + 80, 4);
                    for (int g = 0; g < 8; g++)
                    {
                        int b = 8 * sb + g;
                        if (!q3) Array.Copy(p, 8 * nb + 2 * b, raw, o + 2 * g, 2);
                        for (int w = 0; w < 32; w++)
                        {
                            int j = w % 16;
                            int crumb = (p[8 * b + 4 * (w / 16) + j % 4] >> (2 * (j / 4))) & 3;
                            raw[o + qsAt + 32 * (g / 4) + w] |= (byte)(crumb << (2 * (g % 4)));
                            if (q3) raw[o + w] |= (byte)(((BitConverter.ToUInt32(p, 8 * nb + 4 * b) >> w) & 1) << (g));
                        }
                    }
                }
                break;
            default:
                throw new ArgumentException(type.ToString());
        }
        return raw;
    }

    /// <summary>packed_harness.cpp built once per test run with the host C++ compiler (as CudaBlockMathHostTests' harness).</summary>
    private static class PackedHarness
    {
        private static readonly Lazy<string> Binary = new(Build);

        private static string Build()
        {
            string? compiler = CudaBlockMathHostTests.Harness.Compiler;
            Assert.True(compiler is not null, "no host C++ compiler (g++, clang++ or c++) on PATH");
            string output = TestPaths.TempFile("cuda-packed-harness");
            var psi = new ProcessStartInfo(compiler!) { RedirectStandardError = true, RedirectStandardOutput = true };
            string here = Path.Combine(TestPaths.RepoRoot, "tests", "EdgeLlm.Tests");
            foreach (string a in new[]
                     {
                         "-std=c++14", "-O1", "-pthread", "-ffp-contract=off", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-function",
                         "-I", Path.Combine(TestPaths.RepoRoot, "kernels"),
                         "-include", Path.Combine(here, "Cuda", "HostEmulation", "host_shim.h"),
                         Path.Combine(here, "CudaPackedMatVec", "packed_harness.cpp"), "-o", output,
                     })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"{compiler} failed on packed_harness.cpp:\n{err}");
            return output;
        }

        public static byte[] Exec(MemoryStream input, string what)
        {
            var psi = new ProcessStartInfo(Binary.Value) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var feed = Task.Run(() =>
            {
                p.StandardInput.BaseStream.Write(input.GetBuffer(), 0, (int)input.Length);
                p.StandardInput.Close();
            });
            var output = new MemoryStream();
            p.StandardOutput.BaseStream.CopyTo(output);
            feed.Wait();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"packed harness {what}: exit {p.ExitCode}: {stderr.Result}");
            return output.ToArray();
        }
    }
}
