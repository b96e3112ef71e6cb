using EdgeLlm.Model;

namespace EdgeLlm.ModelGen;

/// <summary>
/// The shapes <c>--shape</c> names, as static members of <see cref="ModelShape"/> (<c>ModelShape.Preset("7b")</c>):
/// the real shapes the benchmarks target (TinyLlama 1.1B, Llama-2 7B, Llama-2/3 70B layout with a 32000 vocab, and
/// the 1B-3B edge models of each family) and a tiny shape for tests; every K-quant needs rows that are a multiple
/// of 256, so tiny keeps dim and ffn at multiples of 256 (rows that are not, like Gemma 3 1B's 1152, get
/// llama.cpp's fallback type).
/// </summary>
public static class ModelShapePresets
{
    private static readonly string[] Names =
        ["tiny", "1.1b", "7b", "70b", "llama3.2-1b", "qwen2.5-1.5b", "qwen3-1.7b", "phi3-mini", "gemma2-2b", "gemma3-1b"];

    extension(ModelShape)
    {
        /// <summary>The preset names, in the order the usage lists them.</summary>
        public static string[] PresetNames => Names;

        /// <summary>A named preset, or null for an unknown name.</summary>
        public static ModelShape? Preset(string name) => name.ToLowerInvariant() switch
        {
            "tiny" => new() { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 512, Vocab = 512, Context = 512 },
            "1.1b" => new() { Dim = 2048, Layers = 22, Heads = 32, KvHeads = 4, Ffn = 5632, Vocab = 32000, Context = 2048 },
            "7b" => new() { Dim = 4096, Layers = 32, Heads = 32, KvHeads = 32, Ffn = 11008, Vocab = 32000, Context = 4096 },
            "70b" => new() { Dim = 8192, Layers = 80, Heads = 64, KvHeads = 8, Ffn = 28672, Vocab = 32000, Context = 4096 },
            // Llama-3.2-1B: head 64, tied embeddings, rope base 500000 with llama3 rope_freqs.
            "llama3.2-1b" => new()
            {
                Dim = 2048, Layers = 16, Heads = 32, KvHeads = 8, Ffn = 8192, Vocab = 128256, Context = 131072,
                Tied = true, RopeFreqs = true, RopeBase = 500000f,
            },
            // Qwen2.5-1.5B: q/k/v biases (the qwen2 layout), tied embeddings (tie_word_embeddings in its config).
            "qwen2.5-1.5b" => new()
            {
                Arch = "qwen2", Dim = 1536, Layers = 28, Heads = 12, KvHeads = 2, Ffn = 8960, Vocab = 151936, Context = 32768,
                Tied = true,
            },
            // Qwen3-1.7B: head 128 (q is 16 x 128 = dim), q/k norms, tied embeddings.
            "qwen3-1.7b" => new()
            {
                Arch = "qwen3", Dim = 2048, Layers = 28, Heads = 16, KvHeads = 8, Ffn = 6144, Vocab = 151936, Context = 40960,
                KeyLength = 128, Tied = true,
            },
            // Phi-3-mini-4k: fused attn_qkv and gate|up.
            "phi3-mini" => new()
            {
                Arch = "phi3", Dim = 3072, Layers = 32, Heads = 32, KvHeads = 32, Ffn = 8192, Vocab = 32064, Context = 4096,
            },
            // Gemma-2-2B: head 256 (q is 8 x 256 = 2048, not dim), softcaps 50/30, window 4096 on even layers.
            "gemma2-2b" => new()
            {
                Arch = "gemma2", Dim = 2304, Layers = 26, Heads = 8, KvHeads = 4, Ffn = 9216, Vocab = 256000, Context = 8192,
                KeyLength = 256, Tied = true, Window = 4096,
            },
            // Gemma-3-1B: head 256, q/k norms, five local layers (window 512, base 10000) per global one (base 1e6).
            "gemma3-1b" => new()
            {
                Arch = "gemma3", Dim = 1152, Layers = 26, Heads = 4, KvHeads = 1, Ffn = 6912, Vocab = 262144, Context = 32768,
                KeyLength = 256, Tied = true, Window = 512, RopeBase = 1000000f,
            },
            _ => null,
        };
    }
}
