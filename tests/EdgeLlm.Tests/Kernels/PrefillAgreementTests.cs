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
/// that mixes up tokens, positions or rows changes the hidden states and the logits by O(1).
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
    public void AllLogitsPrefillMatchesTokenByTokenDecode(GgmlType type)
    {
        string path = RandomModel.Write(new RandomModelSpec { WeightType = type, Dim = 256, Heads = 4, KvHeads = 2, Ffn = 512 });
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 2, MaxBatch = 13 });
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
                    $"{type} position {pos} logit {i}: prefill {b} vs decode {one[i]} (largest |logit| {scale})");
            }
        }
    }
}
