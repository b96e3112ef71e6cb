using EdgeLlm.Generation;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Generation;

/// <summary>A tiny byte-level BPE vocabulary written with GgufWriter, whose merges are worked through by hand.</summary>
public class HandBuiltBpeTests
{
    // Ids:                       0    1    2    3    4     5     6      7      8      9                     10
    private static readonly string[] Tokens = ["a", "b", "c", "Ġ", "ab", "bc", "abc", "Ġab", "Ċ", "<|begin_of_text|>", "Ġa"];

    // Ranks: "a b" 0, "Ġ a" 1, "b c" 2. There is no "ab c" and no "Ġ ab" / "Ġa b" merge.
    private static readonly string[] Merges = ["a b", "Ġ a", "b c"];

    private static Tokenizer Build(string pre) => Tokenizer.Create(VocabularyTests.Load(w => w
        .Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.pre", pre)
        .Set("tokenizer.ggml.tokens", Tokens).Set("tokenizer.ggml.merges", Merges)
        .Set("tokenizer.ggml.token_type", new[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1 })
        .Set("tokenizer.ggml.bos_token_id", 9u).Set("tokenizer.ggml.eos_token_id", 9u)));

    [Fact]
    public void MergesLowestRankFirst()
    {
        var t = Build("gpt-2");
        // "abc": pairs (a,b) rank 0 and (b,c) rank 2 -> "ab" first; then (ab,c) has no rank: [ab, c].
        Assert.Equal(new[] { 4, 2 }, t.Encode("abc", addBos: false));
        // "bc": one pair, rank 2 -> "bc".
        Assert.Equal(new[] { 5 }, t.Encode("bc", addBos: false));
        // " ab" -> "Ġab": (Ġ,a) rank 1 and (a,b) rank 0 -> "ab" first, leaving (Ġ,ab) unranked: [Ġ, ab], although "Ġab" is a token.
        Assert.Equal(new[] { 3, 4 }, t.Encode(" ab", addBos: false));
        // " a": (Ġ,a) rank 1 -> "Ġa".
        Assert.Equal(new[] { 10 }, t.Encode(" a", addBos: false));
        // A byte with no token ("d") is dropped, as llama.cpp does; "\n" is "Ċ".
        Assert.Equal(new[] { 0, 8 }, t.Encode("ad\n", addBos: false));
        // gpt-2 style vocabularies do not add BOS by default.
        Assert.Equal(new[] { 5 }, t.Encode("bc", addBos: true));
        Assert.Equal("abc ab a\n", t.Decode([4, 2, 3, 4, 10, 8]));
    }

    [Fact]
    public void LlamaBpeEmitsWholeWordTokensWithoutMerging()
    {
        var t = Build("llama-bpe");
        // ignore_merges: "abc" and "Ġab" are tokens, so they are emitted whole.
        Assert.Equal(new[] { 6 }, t.Encode("abc", addBos: false));
        Assert.Equal(new[] { 7 }, t.Encode(" ab", addBos: false));
        // "bca" is not a token: merged as usual -> (b,c) rank 2 -> [bc, a].
        Assert.Equal(new[] { 5, 0 }, t.Encode("bca", addBos: false));
        // Llama-3 vocabularies add BOS; a literal special token is parsed only on request.
        Assert.Equal(new[] { 9, 6 }, t.Encode("abc", addBos: true));
        Assert.Equal(new[] { 9, 6 }, t.Encode("<|begin_of_text|>abc", addBos: false, parseSpecial: true));
        Assert.DoesNotContain(9, t.Encode("<|begin_of_text|>abc", addBos: false));
        // The control token prints nothing by default.
        Assert.Equal("abc", t.Decode([9, 6]));
        Assert.Equal("<|begin_of_text|>abc", t.Decode([9, 6], renderSpecial: true));
    }
}
