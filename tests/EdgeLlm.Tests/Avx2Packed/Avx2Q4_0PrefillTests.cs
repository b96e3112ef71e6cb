using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Kernels;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.Tests.Avx2Packed;

/// <summary>
/// A whole Q4_0 prefill with every position's logits on the AVX2 kernels (VNNI off and on: the eight-row GEMM over the
/// fp16-scale copy, its float scale panel and eight-token passes; 21 tokens with at most 13 or 16 a batch, so chunks of
/// 13 and 8 or 16 and 5 run passes of eight, four and one token) against the scalar rung (the integer reference every rung must agree
/// with) decoding the same tokens one at a time, on a random two-layer model whose matrices are all Q4_0 with rows that
/// are not a multiple of a row tile. A last-bit difference in an activation can flip one int8 of the next matmul's
/// quantized activations, so the logits are held to 2e-2 of the position's largest logit, as in
/// <see cref="PrefillAgreementTests"/>; a batch that mixes up tokens, positions or rows changes them by O(1).
/// </summary>
public sealed class Avx2Q4_0PrefillTests
{
    private static readonly int[] Tokens = [1, 17, 255, 3, 299, 42, 42, 7, 100, 260, 2, 0, 150, 151, 9, 33, 77, 5, 12, 280, 64];

    [VariantTheory(Variant.Avx2)]
    [InlineData(13)]
    [InlineData(16)]
    public void VnniOffAllLogitsPrefillMatchesScalarDecode(int maxBatch) => Check(Variant.Avx2, maxBatch);

    [VariantTheory(Variant.Avx2Vnni)]
    [InlineData(13)]
    [InlineData(16)]
    public void VnniOnAllLogitsPrefillMatchesScalarDecode(int maxBatch) => Check(Variant.Avx2Vnni, maxBatch);

    private static void Check(Variant variant, int maxBatch)
    {
        string path = RandomModel.Write(new RandomModelSpec { WeightType = GgmlType.Q4_0, Dim = 256, Heads = 4, KvHeads = 2, Ffn = 544 });
        var options = new BackendOptions { Threads = 2, MaxBatch = maxBatch };
        using var model = OnVariant(path, options, variant);
        int v = model.VocabSize;
        var batched = new float[Tokens.Length * v];
        model.Forward(Tokens, 0, batched, allLogits: true);

        using var reference = OnVariant(path, options, Variant.Scalar);
        var one = new float[v];
        for (int pos = 0; pos < Tokens.Length; pos++)
        {
            reference.Forward(Tokens[pos], pos, one);
            float scale = 0;
            foreach (float f in one) scale = Math.Max(scale, Math.Abs(f));
            Assert.True(scale > 0.1f, $"position {pos}: reference logits all near zero");
            for (int i = 0; i < v; i++)
            {
                float b = batched[pos * v + i];
                Assert.True(Math.Abs(b - one[i]) <= 2e-2f * scale,
                    $"{variant} position {pos} logit {i}: prefill {b} vs scalar decode {one[i]} (largest |logit| {scale})");
            }
        }
    }

    private static LlamaModel OnVariant(string path, BackendOptions options, Variant v)
    {
        var (rung, flags) = KernelVariants.Of(v);
        var file = GgufFile.Open(path);
        try
        {
            return new LlamaModel(file, new CpuBackend(options.Threads, options.BatchInvariant, rung, flags), options, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}
