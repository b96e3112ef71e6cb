using EdgeLlm.Model;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// A converted Hugging Face checkpoint runs as the original model: EdgeLlm's logits for the F32 GGUF that
/// edgellm-convert writes match, at every position, a float64 forward pass computed directly from the HF
/// tensors as transformers defines the family (<see cref="HfReferenceModel"/>). The sequence (12 tokens) is
/// longer than the Gemma sliding windows (4) so the windowed layers are exercised.
/// </summary>
public class HfFamilyLogitsTests
{
    /// <summary>The families EdgeLlm's forward pass runs.</summary>
    public static TheoryData<string> Families => new(HfFamilyCheckpoint.Families);

    private static readonly int[] Tokens = [256, 72, 101, 108, 258, 300 - 1, 33, 7, 150, 259, 12, 200];

    [Theory]
    [MemberData(nameof(Families))]
    public void ConvertedModelMatchesTheFloat64Reference(string family)
    {
        var ck = HfFamilyCheckpoint.Create(family, seed: 5);
        var want = new HfReferenceModel(ck).Forward(Tokens);
        string gguf = HfFamilyConvertTests.ConvertFamily(ck, "f32");
        using var m = LlamaModel.Load(gguf, new BackendOptions { Threads = 2, ContextSize = Tokens.Length });
        Assert.Equal(ck.GgufArch == "gemma3" ? ck.TokenizerTokens : ck.Vocab, m.VocabSize);
        var logits = new float[m.VocabSize];
        double worst = 0;
        for (int pos = 0; pos < Tokens.Length; pos++)
        {
            m.Forward(Tokens[pos], pos, logits);
            for (int i = 0; i < logits.Length; i++) worst = Math.Max(worst, Math.Abs(logits[i] - want[pos][i]));
        }
        Assert.True(worst <= 1e-4, $"{family}: max |logit - float64 reference| = {worst}");
        // The reference itself is not flat: the positions' logits spread by more than the tolerance by far.
        Assert.True(want[^1].Max() - want[^1].Min() > 0.5, $"{family}: reference logits span {want[^1].Max() - want[^1].Min()}");
    }
}
