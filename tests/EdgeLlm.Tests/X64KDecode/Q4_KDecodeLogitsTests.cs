using EdgeLlm.Backends;
using EdgeLlm.Model;
using EdgeLlm.Tests.Model;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>
/// Q4_K decode end to end: tests/data/models-visible/llama-Q4_K.gguf (every matrix Q4_K) decoded one token at a time
/// over the 40 tokens of the reference, so every product is a one-token matmul (on x64 through the decode copy of
/// <c>DotQ4_K.Repack</c>), against (1) the same model's 40-token prefill with all logits, whose batched products read the
/// copy with its four-token loop on AVX-512 and the stored rows with the four-token loops on AVX2: every logit within
/// 1e-4 of it (logits up to about 2; measured 9.5e-7 before the four-token copy loop, exactly 0 with
/// EDGELLM_KERNEL_REPACK=0), and
/// (2) llama.cpp: the RMS of the decode logits against llama.cpp's F16 logits within 10% of llama.cpp's own Q4_K run, top-1
/// agreement within 3 of 40, as <see cref="QuantTypeLogits"/> scores the prefill.
/// </summary>
public sealed class Q4_KDecodeLogitsTests(ITestOutputHelper output)
{
    [Fact]
    public void DecodeLogitsMatchPrefillAndLlamaCpp()
    {
        string dir = TestPaths.Data("models-visible");
        var (tokens, f16) = QuantTypeLogits.ReadReference(Path.Combine(dir, "llama.json"));
        var (_, quant) = QuantTypeLogits.ReadReference(Path.Combine(dir, "llama-Q4_K.json"));
        using var model = LlamaModel.Load(Path.Combine(dir, "llama-Q4_K.gguf"),
            new BackendOptions { Threads = 2, ContextSize = tokens.Length, MaxBatch = tokens.Length, Device = "cpu" });
        int v = model.VocabSize;
        var prefill = new float[tokens.Length * v];
        model.Forward(tokens, 0, prefill, allLogits: true);
        var decode = new float[tokens.Length * v];
        for (int p = 0; p < tokens.Length; p++) model.Forward(tokens[p], p, decode.AsSpan(p * v, v));

        double maxDiff = 0, maxAbs = 0, ourSq = 0, refSq = 0;
        int compared = 0, ourTop1 = 0, refTop1 = 0;
        for (int p = 0; p < tokens.Length; p++)
        {
            for (int i = 0; i < v; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(decode[p * v + i] - prefill[p * v + i]));
                maxAbs = Math.Max(maxAbs, Math.Abs(prefill[p * v + i]));
            }
            foreach (var (id, f) in f16[p])
            {
                int k = Array.FindIndex(quant[p], e => e.Id == id);
                if (k < 0) continue;
                ourSq += Math.Pow(decode[p * v + id] - f, 2);
                refSq += Math.Pow(quant[p][k].Logit - f, 2);
                compared++;
            }
            int best = 0;
            for (int i = 1; i < v; i++) if (decode[p * v + i] > decode[p * v + best]) best = i;
            if (best == f16[p][0].Id) ourTop1++;
            if (quant[p][0].Id == f16[p][0].Id) refTop1++;
        }
        double ourRms = Math.Sqrt(ourSq / compared), refRms = Math.Sqrt(refSq / compared);
        output.WriteLine($"decode vs prefill: max |diff| {maxDiff:G3} (max |logit| {maxAbs:G3}); RMS vs F16 ours {ourRms:F5}, llama.cpp {refRms:F5}; top-1 {ourTop1} vs {refTop1} of {tokens.Length}");
        Assert.True(maxDiff <= 1e-4, $"decode logits differ from the prefill's by up to {maxDiff:G3}");
        Assert.True(compared >= 100, $"only {compared} logits in both top-10 lists");
        Assert.True(Math.Abs(ourRms - refRms) <= 0.10 * refRms, $"decode RMS vs F16 {ourRms:F5}, llama.cpp's {refRms:F5}");
        Assert.True(Math.Abs(ourTop1 - refTop1) <= 3, $"decode top-1 {ourTop1} vs llama.cpp's {refTop1}");
    }
}
