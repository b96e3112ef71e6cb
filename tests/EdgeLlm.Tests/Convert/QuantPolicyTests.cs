using EdgeLlm.Convert;
using EdgeLlm.Gguf;
using static EdgeLlm.Convert.QuantPolicy;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// Per-tensor types against llama.cpp's llama-quant.cpp policy for the Llama-2-7B shape (32 layers, dim 4096,
/// ffn 11008, vocab 32000, untied). The expected layer lists are written out by hand, not computed;
/// LlamaQuantPolicyTests compares every file type with the lists llama-quantize itself produced.
/// </summary>
public class QuantPolicyTests
{
    private static readonly ModelFacts Llama7B = new(32, HasOutput: true, Is70B: false);

    private static GgmlType T(OutputType o, string name, long[] dims, ModelFacts? m = null) => Choose(o, name, dims, m ?? Llama7B).Type;

    private static readonly (string Suffix, long[] Dims)[] Block =
    [
        ("attn_q.weight", [4096, 4096]), ("attn_k.weight", [4096, 4096]), ("attn_v.weight", [4096, 4096]),
        ("attn_output.weight", [4096, 4096]), ("attn_norm.weight", [4096]), ("ffn_gate.weight", [4096, 11008]),
        ("ffn_down.weight", [11008, 4096]), ("ffn_up.weight", [4096, 11008]), ("ffn_norm.weight", [4096]),
    ];

    [Fact]
    public void Q4_0MatchesLlamaCppFor32Layers()
    {
        Assert.Equal(GgmlType.Q4_0, T(OutputType.Q4_0, "token_embd.weight", [4096, 32000]));
        Assert.Equal(GgmlType.Q6_K, T(OutputType.Q4_0, "output.weight", [4096, 32000]));
        Assert.Equal(GgmlType.F32, T(OutputType.Q4_0, "output_norm.weight", [4096]));
        for (int i = 0; i < 32; i++)
            foreach (var (s, d) in Block)
                Assert.Equal(s.EndsWith("norm.weight") ? GgmlType.F32 : GgmlType.Q4_0, T(OutputType.Q4_0, $"blk.{i}.{s}", d));
    }

    [Fact]
    public void Q4_K_MMatchesLlamaCppFor32Layers()
    {
        // use_more_bits for 32 layers: 0-3, 28-31, and every third from 6: 6, 9, ..., 27.
        int[] q6Layers = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
        Assert.Equal(GgmlType.Q4_K, T(OutputType.Q4_K_M, "token_embd.weight", [4096, 32000]));
        Assert.Equal(GgmlType.Q6_K, T(OutputType.Q4_K_M, "output.weight", [4096, 32000]));
        for (int i = 0; i < 32; i++)
        {
            foreach (var (s, d) in Block)
            {
                var want = s.EndsWith("norm.weight") ? GgmlType.F32
                    : (s is "attn_v.weight" or "ffn_down.weight") && q6Layers.Contains(i) ? GgmlType.Q6_K
                    : GgmlType.Q4_K;
                Assert.True(want == T(OutputType.Q4_K_M, $"blk.{i}.{s}", d), $"blk.{i}.{s}: expected {want}");
            }
        }
    }

    [Fact]
    public void TiedEmbeddingTakesTheOutputType()
    {
        var tied = Llama7B with { HasOutput = false };
        Assert.Equal(GgmlType.Q6_K, T(OutputType.Q4_0, "token_embd.weight", [4096, 32000], tied));
        Assert.Equal(GgmlType.Q6_K, T(OutputType.Q4_K_M, "token_embd.weight", [4096, 32000], tied));
        Assert.Equal(GgmlType.Q8_0, T(OutputType.Q8_0, "token_embd.weight", [4096, 32000], tied));
        Assert.Equal(GgmlType.Q4_0, T(OutputType.Q4_0, "token_embd.weight", [4096, 32000])); // untied
    }

    [Fact]
    public void OutputWithRowsNotWholeSuperBlocksIsQ8_0()
    {
        Assert.Equal(GgmlType.Q8_0, T(OutputType.Q4_0, "output.weight", [288, 32000]));   // 288 % 256 != 0 but % 32 == 0
        Assert.Equal(GgmlType.Q8_0, T(OutputType.Q8_0, "output.weight", [4096, 32000]));
    }

    [Fact]
    public void SeventyBAttnVIsRaised()
    {
        var m70 = new ModelFacts(80, true, true, Gqa: 8);
        // use_more_bits(11, 80): 11 >= 10 && 11 < 70 && (11 - 10) % 3 == 1 -> no: Q4_K, which the 70B rule lifts to Q5_K.
        Assert.Equal(GgmlType.Q5_K, T(OutputType.Q4_K_M, "blk.11.attn_v.weight", [8192, 1024], m70));
        Assert.Equal(GgmlType.Q6_K, T(OutputType.Q4_K_M, "blk.12.attn_v.weight", [8192, 1024], m70)); // (12 - 10) % 3 == 2
        Assert.Equal(GgmlType.Q4_K, T(OutputType.Q4_K_M, "blk.11.ffn_down.weight", [28672, 8192], m70));
        Assert.Equal(GgmlType.Q4_K, T(OutputType.Q4_K_M, "blk.11.attn_v.weight", [4096, 4096]));
    }

    [Fact]
    public void IncompatibleRowsFallBackAndSaySo()
    {
        var small = new ModelFacts(5, false, false);
        var c = Choose(OutputType.Q8_0, "blk.0.ffn_down.weight", [172, 64], small);
        Assert.Equal(GgmlType.F16, c.Type);
        Assert.Contains("172", c.Fallback);
        Assert.Equal(GgmlType.Q5_0, Choose(OutputType.Q4_K_M, "blk.1.attn_q.weight", [64, 64], small).Type); // Q4_K needs 256: Q5_0
        Assert.Equal(GgmlType.Q5_0, Choose(OutputType.Q4_K_M, "blk.0.attn_v.weight", [64, 32], small).Type); // use_more_bits(0, 5) is false: Q4_K -> Q5_0
        Assert.Equal(GgmlType.Q8_0, Choose(OutputType.Q4_K_M, "blk.2.attn_v.weight", [64, 32], small).Type); // (2 - 0) % 3 == 2: Q6_K -> Q8_0
        Assert.Equal(GgmlType.F16, Choose(OutputType.Q4_K_M, "blk.1.ffn_down.weight", [172, 64], small).Type); // Q5_0 needs 32
        Assert.Equal(GgmlType.Q5_1, Choose(OutputType.Q5_K_S, "blk.1.ffn_down.weight", [160, 64], small).Type);
        Assert.Equal(GgmlType.IQ4_NL, Choose(OutputType.IQ4_XS, "blk.1.ffn_up.weight", [160, 64], small).Type);
        Assert.Equal(GgmlType.F16, Choose(OutputType.Q4_0, "blk.1.ffn_down.weight", [172, 64], small).Type);
        Assert.Null(Choose(OutputType.Q4_0, "blk.1.ffn_up.weight", [64, 172], small).Fallback);
    }

    [Fact]
    public void FloatTypesConvertMatricesOnly()
    {
        foreach (var o in new[] { OutputType.F32, OutputType.F16, OutputType.BF16 })
        {
            Assert.Equal(BaseType(o), T(o, "output.weight", [4096, 32000]));
            Assert.Equal(BaseType(o), T(o, "blk.3.ffn_down.weight", [11008, 4096]));
            Assert.Equal(GgmlType.F32, T(o, "blk.3.ffn_norm.weight", [4096]));
            Assert.Equal(GgmlType.F32, T(o, "rope_freqs.weight", [64]));
        }
    }

    [Fact]
    public void FileTypeNumbersAreLlamaCpps()
    {
        // llama.h: ALL_F32 0, MOSTLY_F16 1, BF16 32, Q8_0 7, Q4_0 2, Q4_K_M 15, Q4_K_S 14, Q5_K_S 16, Q5_K_M 17,
        // Q6_K 18, Q3_K_M 12, IQ4_XS 30, Q5_0 8.
        Assert.Equal([0u, 1u, 32u, 7u, 2u, 15u, 14u, 16u, 17u, 18u, 12u, 30u, 8u],
            Enum.GetValues<OutputType>().Select(FileType).ToArray());
        Assert.Equal(Names.Length, Enum.GetValues<OutputType>().Length);
        Assert.True(TryParse("Q4_K_M", out var t) && t == OutputType.Q4_K_M);
        Assert.True(TryParse("iq4_xs", out t) && t == OutputType.IQ4_XS);
        Assert.True(TryParse("Q5_K_S", out t) && t == OutputType.Q5_K_S);
        Assert.False(TryParse("q5_k", out _));
    }

    [Fact]
    public void CountersFollowLlamaCppsNameOrderNotTheFileOrder()
    {
        // llama-quantize visits tensors sorted by layer number, then name, so blk.10 comes after blk.9 whatever the
        // file order; attn_v's counter is then the layer index: Q3_K_M gives Q5_K to the first two only.
        var shape = new ModelFacts(12, true, false);
        var names = new[] { "blk.10.attn_v.weight", "blk.1.attn_v.weight", "blk.11.attn_v.weight", "blk.0.attn_v.weight", "blk.2.attn_v.weight" };
        var c = ChooseAll(OutputType.Q3_K_M, names.Select(n => (n, new long[] { 256, 256 })).ToList(), shape);
        Assert.Equal([GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q4_K], c.Select(x => x.Type).ToArray());
        Assert.True(CompareNames("blk.9.attn_v.weight", "blk.10.attn_k.weight") < 0);
        Assert.True(CompareNames("output.weight", "blk.0.attn_k.weight") < 0);
        Assert.True(CompareNames("blk.3.attn_k.weight", "blk.3.attn_v.weight") < 0);
    }
}
