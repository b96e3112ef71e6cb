using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Kernels;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>
/// Several tokens over Q4_K's copy on AVX-512 (<see cref="DotQ4_K.PackedDot2Avx512"/>, <see cref="DotQ4_K.PackedDot4Avx512"/>)
/// and on AVX2 with AVX-VNNI off and on (<see cref="DotQ4_K.PackedDot2Avx2"/>, <see cref="DotQ4_K.PackedDot4Avx2"/>), and
/// the matmul driver that runs them for batches of any size. Each token's
/// activations are drawn from their own seed and scaled by 1 + 3t, so a token read at another token's offset (or a row
/// at another row's) is far outside the tolerance. Every (token, row) result is checked against the integer scalar rung
/// (<see cref="DotQ4_K.DotScalar"/> on the stored row) within 1e-5·M, and against the token computed alone, bit for bit
/// (the int32 sums are exact and the float steps the same, so a batch of any size gives a token its one-token bits).
/// The matmul runs 109 rows of 768 values (thirteen groups in two cache tiles, five rows on the stored rows) on three
/// threads (ranges cut inside groups), batches of 1, 2, 3, 4, 5, 8 and 13 tokens, plain and batch-invariant. A whole Q4_K_M model's all-logits
/// prefill is checked against the scalar rung's. Each rung's theories are skipped where the CPU cannot run it.
/// </summary>
public sealed unsafe class X64PackedQ4_KBatchTests
{
    private const int G = DotQ4_K.PackRows;

    [KPackedTheory(KPackedWay.Avx512)]
    [InlineData(2, 1, "gaussian")]
    [InlineData(2, 3, "raw")]
    [InlineData(4, 1, "raw")]
    [InlineData(4, 3, "gaussian")]
    [InlineData(4, 9, "raw")]
    public void GroupLoopsMatchScalarAndTheOneTokenLoop(int tokens, int nb, string kind) => GroupLoops(KPackedWay.Avx512, tokens, nb, kind);

    [KPackedTheory(KPackedWay.Avx2)]
    [InlineData(2, 1, "gaussian")]
    [InlineData(2, 3, "raw")]
    [InlineData(4, 1, "raw")]
    [InlineData(4, 3, "gaussian")]
    [InlineData(4, 9, "raw")]
    public void Avx2GroupLoopsMatchScalarAndTheOneTokenLoop(int tokens, int nb, string kind) => GroupLoops(KPackedWay.Avx2, tokens, nb, kind);

    [KPackedTheory(KPackedWay.Avx2Vnni)]
    [InlineData(2, 1, "raw")]
    [InlineData(2, 3, "gaussian")]
    [InlineData(4, 1, "gaussian")]
    [InlineData(4, 3, "raw")]
    [InlineData(4, 9, "gaussian")]
    public void Avx2VnniGroupLoopsMatchScalarAndTheOneTokenLoop(int tokens, int nb, string kind) => GroupLoops(KPackedWay.Avx2Vnni, tokens, nb, kind);

    private static void GroupLoops(KPackedWay way, int tokens, int nb, string kind)
    {
        int n = nb * 256, bb = DotQ4_K.BlockBytes;
        var stored = new byte[G * nb * bb];
        for (int r = 0; r < G; r++) Weights(GgmlType.Q4_K, n, kind, 3300 + 19 * r + nb).CopyTo(stored, r * nb * bb);
        KPackedCopyChecks.GroupLoopsMatchScalarAndTheOneTokenLoop(X64PackedQ4_KTests.Format, X64PackedQ4_KTests.Loops(way), tokens, nb, stored, $"{way}, {kind}: ");
    }

    private static readonly Lazy<KPackedCopyChecks.MatMulData> MatMulData = new(() => KPackedCopyChecks.MakeMatMulData(X64PackedQ4_KTests.Format));

    [VariantTheory(Variant.Avx512)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(13)]
    public void MatMulOverTheCopyMatchesScalarAndDecodeAlone(int tokens) => MatMul(Variant.Avx512, tokens);

    [VariantTheory(Variant.Avx2)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(13)]
    public void Avx2MatMulOverTheCopyMatchesScalarAndDecodeAlone(int tokens) => MatMul(Variant.Avx2, tokens);

    [VariantTheory(Variant.Avx2Vnni)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(13)]
    public void Avx2VnniMatMulOverTheCopyMatchesScalarAndDecodeAlone(int tokens) => MatMul(Variant.Avx2Vnni, tokens);

    private static void MatMul(Variant variant, int tokens)
    {
        // Plain and batch-invariant (serve --parallel): both read the copy for every batch size.
        foreach (bool invariant in new[] { false, true })
            KPackedCopyChecks.MatMulMatchesScalarAndDecodeAlone(X64PackedQ4_KTests.Format, MatMulData.Value, variant, tokens, invariant, "blk.0.ffn_up.weight",
                bitExact: KernelRung.UseRepack || invariant, copyExpected: false);
    }

    private static readonly int[] Prompt = [1, 17, 255, 3, 299, 42, 42, 7, 100, 260, 2, 0, 150, 151, 9, 33, 77];

    /// <summary>
    /// A random Q4_K_M model (ModelGen's mix: Q4_K matrices, Q6_K for the output and some ffn_down / attn_v) of rows of
    /// 256 and 768 values: the all-logits prefill of 17 tokens (in chunks of <paramref name="maxBatch"/>: the copy's four-,
    /// two- and one-token steps) on the rung against the same prefill on the scalar rung (the reference loops), every logit within 2e-2 of
    /// the position's largest (a last-bit difference can flip one int8 of the next product's activations; a mixed-up
    /// token or row changes the logits by O(1)), and against token-by-token decode on the rung within the same bound.
    /// </summary>
    [VariantTheory(Variant.Avx512)]
    [InlineData(13)]
    [InlineData(5)]
    public void Q4_K_MAllLogitsMatchTheScalarRung(int maxBatch) => AllLogits(Variant.Avx512, maxBatch);

    [VariantTheory(Variant.Avx2)]
    [InlineData(13)]
    [InlineData(5)]
    public void Avx2Q4_K_MAllLogitsMatchTheScalarRung(int maxBatch) => AllLogits(Variant.Avx2, maxBatch);

    [VariantTheory(Variant.Avx2Vnni)]
    [InlineData(13)]
    public void Avx2VnniQ4_K_MAllLogitsMatchTheScalarRung(int maxBatch) => AllLogits(Variant.Avx2Vnni, maxBatch);

    private static void AllLogits(Variant variant, int maxBatch)
    {
        var shape = new ModelShape { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 768, Vocab = 300, Context = 64 };
        string path = TestPaths.TempFile($"q4kmulti-q4_k_m-{variant}-{maxBatch}.gguf");
        ModelGenerator.Write(new ModelGenOptions { Shape = shape, Format = WeightFormat.Q4_K_M, Seed = 11 }, path);
        var options = new BackendOptions { Threads = 2, MaxBatch = maxBatch, ContextSize = 64 };
        float[] fast = Prefill(path, options, variant, out int v, out float[] decode);
        float[] reference = Prefill(path, options, Variant.Scalar, out _, out _);
        for (int pos = 0; pos < Prompt.Length; pos++)
        {
            float scale = 0;
            for (int i = 0; i < v; i++) scale = Math.Max(scale, Math.Abs(reference[pos * v + i]));
            Assert.True(scale > 0.1f, $"position {pos}: reference logits all near zero");
            for (int i = 0; i < v; i++)
            {
                float f = fast[pos * v + i], r = reference[pos * v + i], d = decode[pos * v + i];
                Assert.True(Math.Abs(f - r) <= 2e-2f * scale, $"position {pos} logit {i}: {variant} prefill {f} vs scalar {r} (largest {scale})");
                Assert.True(Math.Abs(d - r) <= 2e-2f * scale, $"position {pos} logit {i}: {variant} decode {d} vs scalar {r} (largest {scale})");
            }
        }
    }

    private static float[] Prefill(string path, BackendOptions options, Variant variant, out int v, out float[] decode)
    {
        var (rung, flags) = KernelVariants.Of(variant);
        var file = GgufFile.Open(path);
        LlamaModel model;
        try
        {
            model = new LlamaModel(file, new CpuBackend(options.Threads, options.BatchInvariant, rung, flags), options, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
        using (model)
        {
            v = model.VocabSize;
            var all = new float[Prompt.Length * v];
            model.Forward(Prompt, 0, all, allLogits: true);
            model.Cache.Clear();
            decode = new float[Prompt.Length * v];
            for (int p = 0; p < Prompt.Length; p++) model.Forward(Prompt[p], p, decode.AsSpan(p * v, v));
            return all;
        }
    }
}
