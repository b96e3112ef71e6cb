using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Kernels;

namespace EdgeLlm.Tests.DecodeOverhead;

/// <summary>
/// A lone decode token's activations are quantized inside the product's dispatch, the threads claiming chunks of its
/// blocks (<see cref="CpuBackend.SplitOneTokenQuantize"/>), instead of by the caller alone before it. The products must
/// carry exactly the bits of the serial quantize (the same backend with the split off), for every activation format
/// (Q8_0 with the panel of the Q4_0 kernels and the repacked copies, Q8_0 blocks, Q8_1, Q8_K), on 2 and 3 threads, rows
/// of one Q8_K block (one chunk: the other threads find nothing to claim), of 3 chunks, and of 25 Q8_0 blocks (a last
/// chunk of one block), still one dispatch per product, and each output must
/// match a float64 product of the dequantized weights and the unquantized input. A stale input runs first, so a thread
/// that read blocks before every share was written would differ.
/// </summary>
public sealed unsafe class SplitQuantizeTests
{
    private const int Rows = 48;

    public static TheoryData<GgmlType, int, int> Cases()
    {
        var d = new TheoryData<GgmlType, int, int>();
        foreach (var t in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.IQ4_NL, GgmlType.Q4_K, GgmlType.Q6_K })
            foreach (int n in new[] { 256, 768, 800 })
                foreach (int threads in new[] { 2, 3 })
                    if (n % 256 == 0 || t is not (GgmlType.Q4_K or GgmlType.Q6_K))
                        d.Add(t, n, threads);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Split_quantize_gives_the_bits_of_the_serial_quantize(GgmlType type, int n, int threads)
    {
        long rowBytes = GgmlTypes.RowBytes(type, n);
        byte[] weights = GC.AllocateUninitializedArray<byte>((int)(rowBytes * Rows), pinned: true);
        var deq = new float[Rows * n];
        for (int r = 0; r < Rows; r++)
        {
            float[] f = K256TestData.Gaussian(n, 13 * (int)type + r, 0.05);
            byte[] q = QuantRef.QuantizeRow(type, f);
            q.CopyTo(weights, r * rowBytes);
            QuantRef.DequantizeRow(type, q, deq.AsSpan(r * n, n));
        }
        float[] x = K256TestData.Gaussian(n, 4242);
        float[] stale = K256TestData.Gaussian(n, 777);
        for (int i = 0; i < n; i++) stale[i] *= -5f;

        foreach (bool invariant in new[] { false, true })
        {
            var (split, splitDispatches) = Run(split: true, invariant);
            var (serial, serialDispatches) = Run(split: false, invariant);
            string what = $"{type}, rows of {n}, {threads} threads, batch invariant {invariant}";
            Assert.True(splitDispatches == 1 && serialDispatches == 1, $"{what}: {splitDispatches} / {serialDispatches} dispatches, 1 expected");
            for (int r = 0; r < Rows; r++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(split[r]) == BitConverter.SingleToInt32Bits(serial[r]),
                    $"{what}: row {r}: {split[r]} split vs {serial[r]} serial");
                double want = 0, mag = 0;
                for (int i = 0; i < n; i++)
                {
                    double p = (double)deq[r * n + i] * x[i];
                    want += p;
                    mag += Math.Abs(p);
                }
                Assert.True(Math.Abs(split[r] - want) <= 2e-2 * mag, $"{what}: row {r}: {split[r]} vs float64 {want:G6} (|w||x| {mag:G3})");
            }
        }

        (float[] Out, long Dispatches) Run(bool split, bool invariant)
        {
            var h = GCHandle.Alloc(weights, GCHandleType.Pinned);
            try
            {
                using var backend = new CpuBackend(threads, invariant) { SplitOneTokenQuantize = split };
                backend.Prepare(new BackendLimits(1, n, 4, 2, 2));
                var w = backend.LoadWeight(new TensorView("w", type, [n, Rows], (byte*)h.AddrOfPinnedObject(), weights.Length));
                var bx = backend.Allocate(n);
                var dst = backend.Allocate(Rows);
                backend.CopyIn(stale, bx, 0);
                backend.MatMul(w, bx, dst, 1);
                backend.CopyIn(x, bx, 0);
                long before = backend.Dispatches;
                backend.MatMul(w, bx, dst, 1);
                long dispatches = backend.Dispatches - before;
                var o = new float[Rows];
                backend.CopyOut(dst, 0, o);
                return (o, dispatches);
            }
            finally
            {
                h.Free();
            }
        }
    }

    /// <summary>
    /// The x64 panel build (<see cref="Q8_0Panel.FromBlocks"/>: AVX2 where the CPU has it) and any split of it into block
    /// ranges (<see cref="Q8_0Panel.FromBlocksRange"/>) against the panel worked out here from its definition: the quant
    /// bytes back to back, dx = the fp16 d as float, c = dx·(8·Σq). Blocks of raw bytes, so every quant value from −128 to
    /// 127 (also the −128 a Q8_0 quantizer never writes) and the sums' extremes (all −128, all 127) occur.
    /// </summary>
    [Fact]
    public void Panel_build_and_its_ranges_match_the_panel_definition()
    {
        const int nb = 37, XB = ActivationQuant.Q8_0BlockBytes;
        var rng = new Random(11);
        byte[] blocks = new byte[nb * XB];
        rng.NextBytes(blocks);
        for (int b = 0; b < nb; b++)
        {
            float d = (float)(rng.NextDouble() * 0.1 + 1e-3);
            BitConverter.TryWriteBytes(blocks.AsSpan(b * XB, 2), BitConverter.HalfToUInt16Bits((Half)d));
        }
        for (int j = 0; j < 32; j++)
        {
            blocks[XB + 2 + j] = 0x80; // block 1: all -128
            blocks[2 * XB + 2 + j] = 0x7f; // block 2: all 127
            blocks[3 * XB + 2 + j] = (byte)(sbyte)(j * 8 - 128); // block 3: a ramp through the range
        }
        var want = new byte[nb * Q8_0Panel.BytesPerBlock];
        for (int b = 0; b < nb; b++)
        {
            int s = 0;
            for (int j = 0; j < 32; j++)
            {
                sbyte q = (sbyte)blocks[b * XB + 2 + j];
                want[b * 32 + j] = (byte)q;
                s += q;
            }
            float d = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(blocks, b * XB));
            BitConverter.TryWriteBytes(want.AsSpan(nb * 32 + 4 * b, 4), d);
            BitConverter.TryWriteBytes(want.AsSpan(nb * 36 + 4 * b, 4), d * (8 * s));
        }
        var whole = new byte[want.Length];
        var ranged = new byte[want.Length];
        fixed (byte* xq = blocks)
        fixed (byte* p = whole)
        fixed (byte* r = ranged)
        {
            Q8_0Panel.FromBlocks(xq, p, nb * 32);
            // Uneven ranges, an empty one, and the remainder (not a multiple of four blocks) at the end.
            int[] cuts = [0, 5, 5, 18, 30, nb];
            for (int i = 0; i + 1 < cuts.Length; i++) Q8_0Panel.FromBlocksRange(xq, r, nb, cuts[i], cuts[i + 1]);
            nint src = (nint)xq, dst = (nint)r;
            Assert.Throws<ArgumentOutOfRangeException>(() => Q8_0Panel.FromBlocksRange((byte*)src, (byte*)dst, nb, 3, nb + 1));
        }
        Assert.Equal(want, whole);
        Assert.Equal(want, ranged);
    }
}
