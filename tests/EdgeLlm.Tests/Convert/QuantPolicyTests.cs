using EdgeLlm.Convert;
using EdgeLlm.Gguf;
using static EdgeLlm.Convert.QuantPolicy;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// Per-tensor types against llama.cpp's llama-quant.cpp policy for the Llama-2-7B shape (32 layers, dim 4096,
/// ffn 11008, vocab 32000, untied). The expected layer lists are written out by hand, not computed.
/// </summary>
public class QuantPolicyTests
{
    private static readonly ModelShape Llama7B = new(32, HasOutput: true, Is70B: false);

    private static GgmlType T(OutputType o, string name, long[] dims, ModelShape? m = null) => Choose(o, name, dims, m ?? Llama7B).Type;

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
        var m70 = new ModelShape(80, true, true);
        // use_more_bits(11, 80): 11 >= 10 && 11 < 70 && (11 - 10) % 3 == 1 -> no; llama.cpp makes it Q5_K, EdgeLlm Q6_K.
        Assert.Equal(GgmlType.Q6_K, T(OutputType.Q4_K_M, "blk.11.attn_v.weight", [8192, 1024], m70));
        Assert.Equal(GgmlType.Q4_K, T(OutputType.Q4_K_M, "blk.11.ffn_down.weight", [28672, 8192], m70));
        Assert.Equal(GgmlType.Q4_K, T(OutputType.Q4_K_M, "blk.11.attn_v.weight", [4096, 4096]));
    }

    [Fact]
    public void IncompatibleRowsFallBackAndSaySo()
    {
        var small = new ModelShape(5, false, false);
        var c = Choose(OutputType.Q8_0, "blk.0.ffn_down.weight", [172, 64], small);
        Assert.Equal(GgmlType.F16, c.Type);
        Assert.Contains("172", c.Fallback);
        Assert.Equal(GgmlType.Q8_0, Choose(OutputType.Q4_K_M, "blk.1.attn_q.weight", [64, 64], small).Type); // Q4_K needs 256
        Assert.Equal(GgmlType.Q8_0, Choose(OutputType.Q4_K_M, "blk.0.attn_v.weight", [64, 32], small).Type); // Q6_K -> Q8_0
        Assert.Equal(GgmlType.F16, Choose(OutputType.Q4_K_M, "blk.1.ffn_down.weight", [172, 64], small).Type);
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
        Assert.Equal([0u, 1u, 32u, 7u, 2u, 15u],
            new[] { OutputType.F32, OutputType.F16, OutputType.BF16, OutputType.Q8_0, OutputType.Q4_0, OutputType.Q4_K_M }.Select(FileType).ToArray());
        Assert.True(TryParse("Q4_K_M", out var t) && t == OutputType.Q4_K_M);
        Assert.False(TryParse("q5_k", out _));
    }
}
