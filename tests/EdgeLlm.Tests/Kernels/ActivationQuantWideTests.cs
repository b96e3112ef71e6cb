using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Quant;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The 512- and 256-bit Q8_0 activation quantizers (<see cref="ActivationQuant.QuantizeQ8_0Avx512"/>,
/// <see cref="ActivationQuant.QuantizeQ8_0Avx2"/>) and the ones that write a <see cref="Q8_0Panel"/> directly, bit for bit
/// against the scalar reference quantizer (<see cref="QuantRef"/>, ggml's quantize_row_q8_0_ref) for every block count
/// 1..17 and 64, 65, on inputs that reach each branch: Gaussian rows, zero blocks and outliers, exact .5 ties, huge and
/// subnormal values, and blocks whose d = amax/127 lands on and around the fp16 boundaries (the smallest normal, the
/// subnormal steps and their midpoints, 65504, the 65520 rounding edge, overflow). The panel's expected bytes are worked
/// out here from the reference blocks: the quants, float(fp16 d) and d·(8·Σq). A rung the CPU lacks is skipped.
/// </summary>
public sealed unsafe class ActivationQuantWideTests
{
    public sealed class RungTheoryAttribute : TheoryAttribute
    {
        public RungTheoryAttribute(Rung rung)
        {
            if (!KernelRung.IsSupported(rung)) Skip = $"this CPU cannot run the {rung} quantizer";
        }
    }

    private static readonly int[] BlockCounts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 64, 65];

    public static TheoryData<string, int> Cases()
    {
        var d = new TheoryData<string, int>();
        foreach (string kind in new[] { "gaussian", "zeros and outliers", "ties", "huge and subnormal", "fp16 edges" })
            foreach (int nb in BlockCounts) d.Add(kind, nb);
        return d;
    }

    /// <summary>d values around the fp16 boundaries (amax = 127·d, so d = amax/127 is that float or its neighbour).</summary>
    private static readonly float[] EdgeD =
    [
        6.1035156e-05f, // 2^-14, smallest normal half
        BitConverter.UInt32BitsToSingle(0x387FFFFF), BitConverter.UInt32BitsToSingle(0x38800001),
        5.9604645e-08f, // 2^-24, smallest subnormal half
        8.940697e-08f, // 1.5·2^-24: a tie between two subnormal steps
        2.9802322e-08f, // 2^-25: a tie down to zero
        BitConverter.UInt32BitsToSingle(0x33000001), // just above 2^-25: rounds up to 2^-24
        3.0517578e-05f, // 2^-15
        65504f, 65519.996f, 65520f, 65536f, 1e5f,
        1.00048828125f, // 1 + 2^-11: a tie at the normal half's last bit (even: down)
        1.00146484375f, // 1 + 3·2^-11: a tie (even: up)
        2047.5f, 0.333333343f, 1e-6f, 123.456f,
    ];

    private static float[] Input(string kind, int nb, int seed)
    {
        int n = nb * 32;
        var x = QuantTestData.Gaussian(n, seed);
        var rng = new Random(seed);
        switch (kind)
        {
            case "zeros and outliers":
                for (int b = 0; b < nb; b++)
                {
                    if (b % 3 == 0) Array.Clear(x, 32 * b, 32);
                    else x[32 * b + rng.Next(32)] *= 900f;
                }
                break;
            case "ties":
                for (int i = 0; i < n; i++) x[i] = (i % 64) - 31.5f;
                for (int b = 0; b < nb; b++) x[32 * b + (b * 7) % 32] = b % 2 == 0 ? -127f : 127f;
                break;
            case "huge and subnormal":
                for (int i = 0; i < n; i++) x[i] *= (i / 32) % 2 == 0 ? 1e30f : 1e-40f;
                break;
            case "fp16 edges":
                for (int b = 0; b < nb; b++)
                {
                    float d = EdgeD[(b + seed) % EdgeD.Length];
                    for (int i = 0; i < 32; i++) x[32 * b + i] = (float)(x[32 * b + i] / 4 * d * 127);
                    x[32 * b + (b * 5) % 32] = (b % 2 == 0 ? 127f : -127f) * d;
                }
                break;
        }
        return x;
    }

    private delegate void Quantize(float* x, byte* dst, int n);

    private static Quantize Blocks(Rung rung) => rung == Rung.Avx512 ? ActivationQuant.QuantizeQ8_0Avx512 : ActivationQuant.QuantizeQ8_0Avx2;

    private static Quantize Panel(Rung rung) => rung == Rung.Avx512 ? ActivationQuant.QuantizeQ8_0PanelAvx512 : ActivationQuant.QuantizeQ8_0PanelAvx2;

    private static void BlocksMatchTheReference(Rung rung, string kind, int nb)
    {
        float[] x = Input(kind, nb, 300 + nb);
        byte[] want = QuantRef.QuantizeRow(GgmlType.Q8_0, x);
        var got = new byte[want.Length + 7];
        Array.Fill(got, (byte)0xA5);
        fixed (float* px = x) fixed (byte* pg = got) Blocks(rung)(px, pg, x.Length);
        int diff = QuantTestData.FirstDifference(want, got.AsSpan(0, want.Length).ToArray());
        Assert.True(diff < 0, $"{rung} {kind}, {nb} blocks: first difference at byte {diff} (block {diff / 34}, offset {diff % 34})");
        for (int i = want.Length; i < got.Length; i++) Assert.True(got[i] == 0xA5, $"{rung} {kind}, {nb} blocks: wrote past the row at {i}");
    }

    private static void PanelMatchesTheReference(Rung rung, string kind, int nb)
    {
        float[] x = Input(kind, nb, 700 + nb);
        byte[] blocks = QuantRef.QuantizeRow(GgmlType.Q8_0, x);
        var want = new byte[nb * 40];
        for (int b = 0; b < nb; b++)
        {
            int sum = 0;
            for (int j = 0; j < 32; j++)
            {
                want[32 * b + j] = blocks[34 * b + 2 + j];
                sum += (sbyte)blocks[34 * b + 2 + j];
            }
            float d = (float)BitConverter.ToHalf(blocks, 34 * b);
            BitConverter.TryWriteBytes(want.AsSpan(32 * nb + 4 * b, 4), d);
            BitConverter.TryWriteBytes(want.AsSpan(36 * nb + 4 * b, 4), d * (8 * sum));
        }
        var got = new byte[want.Length + 5];
        Array.Fill(got, (byte)0x5A);
        fixed (float* px = x) fixed (byte* pg = got) Panel(rung)(px, pg, x.Length);
        int diff = QuantTestData.FirstDifference(want, got.AsSpan(0, want.Length).ToArray());
        string where = diff < 32 * nb ? $"quants of block {diff / 32}" : diff < 36 * nb ? $"scale of block {(diff - 32 * nb) / 4}" : $"offset of block {(diff - 36 * nb) / 4}";
        Assert.True(diff < 0, $"{rung} panel {kind}, {nb} blocks: first difference at byte {diff} ({where})");
        for (int i = want.Length; i < got.Length; i++) Assert.True(got[i] == 0x5A, $"{rung} panel {kind}, {nb} blocks: wrote past the panel at {i}");
    }

    [RungTheory(Rung.Avx512)]
    [MemberData(nameof(Cases))]
    public void Avx512BlocksMatchTheReference(string kind, int nb) => BlocksMatchTheReference(Rung.Avx512, kind, nb);

    [RungTheory(Rung.Avx2)]
    [MemberData(nameof(Cases))]
    public void Avx2BlocksMatchTheReference(string kind, int nb) => BlocksMatchTheReference(Rung.Avx2, kind, nb);

    [RungTheory(Rung.Avx512)]
    [MemberData(nameof(Cases))]
    public void Avx512PanelMatchesTheReference(string kind, int nb) => PanelMatchesTheReference(Rung.Avx512, kind, nb);

    [RungTheory(Rung.Avx2)]
    [MemberData(nameof(Cases))]
    public void Avx2PanelMatchesTheReference(string kind, int nb) => PanelMatchesTheReference(Rung.Avx2, kind, nb);

    /// <summary>
    /// The integer fp16 of the wide quantizers against the runtime's <c>(Half)</c> conversion: every 997th float bit
    /// pattern from 0 to +infinity, and each fp16 boundary's neighbourhood (±64 float steps).
    /// </summary>
    [Fact]
    public void HalfBitsIsTheRuntimesRoundToNearestEven()
    {
        void Check(uint u)
        {
            float f = BitConverter.UInt32BitsToSingle(u);
            ushort want = BitConverter.HalfToUInt16Bits((Half)f);
            ushort got = ActivationQuant.HalfBits(f);
            Assert.True(want == got, $"float {f:R} (0x{u:X8}): fp16 0x{got:X4}, the runtime's 0x{want:X4}");
        }
        for (ulong u = 0; u <= 0x7F800000; u += 997) Check((uint)u);
        foreach (uint edge in new uint[] { 0, 0x33000000, 0x33400000, 0x33800000, 0x387FC000, 0x38800000, 0x3F800000, 0x477FE000, 0x477FF000, 0x47800000 })
            for (long k = -64; k <= 64; k++)
                if (edge + k is >= 0 and <= 0x7F800000) Check((uint)(edge + k));
        Check(0x7FC00000); // NaN
        Check(0x80000000); // −0
    }
}
