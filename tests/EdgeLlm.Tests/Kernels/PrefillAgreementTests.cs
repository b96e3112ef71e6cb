using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// A whole prefill with every position's logits (the batched matmuls: four-token kernels, Q4_0's panel, in chunks of
/// 13 and 5 tokens) against the same 18 tokens decoded one at a time (the one-token kernels), for every weight type
/// of the table, on a random two-layer model whose matrices (embeddings and output included) are all of that type.
/// The two paths add the same products, where the four-token loop is not bit-identical to the one-token loop (Q4_0's
/// panel) in a different float order; a last-bit difference in an activation can flip one int8 of the next matmul's
/// quantized activations (a step of 1/127 of its block's largest value), so the logits are held to 2e-2 of the
/// position's largest logit (Q4_0 reaches 5e-3; the types with bit-identical four-token loops agree exactly). A batch
/// that mixes up tokens, positions or rows changes the hidden states and the logits by O(1). Run on the selected rung
/// and on each AVX2 variant the CPU has (so an AVX-512 host checks the AVX2 image's prefill too).
/// </summary>
public sealed class PrefillAgreementTests
{
    private static readonly int[] Tokens = [1, 17, 255, 3, 299, 42, 42, 7, 100, 260, 2, 0, 150, 151, 9, 33, 77, 5];

    public static TheoryData<GgmlType> Types()
    {
        var d = new TheoryData<GgmlType>();
        foreach (var t in TypeTraits.All) d.Add(t.Type);
        return d;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void AllLogitsPrefillMatchesTokenByTokenDecode(GgmlType type) => Check(type, null);

    /// <summary>
    /// The same on the AVX2 kernels (VNNI off and on) whatever rung the process selected: a backend built for that
    /// kernel variant (the AVX2 image's matmuls, Q4_0's and Q8_0's eight-row GEMMs over the repacked weights
    /// included). Skipped where the CPU lacks the variant.
    /// </summary>
    [VariantTheory(Variant.Avx2)]
    [MemberData(nameof(Types))]
    public void AllLogitsPrefillMatchesTokenByTokenDecodeOnAvx2(GgmlType type) => Check(type, Variant.Avx2);

    [VariantTheory(Variant.Avx2Vnni)]
    [MemberData(nameof(Types))]
    public void AllLogitsPrefillMatchesTokenByTokenDecodeOnAvx2Vnni(GgmlType type) => Check(type, Variant.Avx2Vnni);

    private static void Check(GgmlType type, Variant? variant)
    {
        string path = RandomModel.Write(new RandomModelSpec { WeightType = type, Dim = 256, Heads = 4, KvHeads = 2, Ffn = 512 });
        var options = new BackendOptions { Threads = 2, MaxBatch = 13 };
        using var model = variant is { } kv ? OnVariant(path, options, kv) : LlamaModel.Load(path, options);
        int v = model.VocabSize;
        var batched = new float[Tokens.Length * v];
        model.Forward(Tokens, 0, batched, allLogits: true);

        model.Cache.Clear();
        var one = new float[v];
        for (int pos = 0; pos < Tokens.Length; pos++)
        {
            model.Forward(Tokens[pos], pos, one);
            float scale = 0;
            foreach (float f in one) scale = Math.Max(scale, Math.Abs(f));
            Assert.True(scale > 0.1f, $"{type} position {pos}: logits all near zero");
            for (int i = 0; i < v; i++)
            {
                float b = batched[pos * v + i];
                Assert.True(Math.Abs(b - one[i]) <= 2e-2f * scale,
                    $"{type} {variant} position {pos} logit {i}: prefill {b} vs decode {one[i]} (largest |logit| {scale})");
            }
        }
    }

    /// <summary>The model on a CPU backend whose matmuls run kernel variant <paramref name="v"/>.</summary>
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
