namespace EdgeLlm.Model;

/// <summary>
/// llama.cpp's GGUF metadata keys of a model, written once for the reader (<see cref="LlamaConfig"/>), the
/// converter, the model generator and the test writers. The hyperparameter keys are suffixes after the
/// architecture's name (<c>qwen2.embedding_length</c>): <see cref="Of"/> joins them.
/// </summary>
public static class ModelKeys
{
    public const string Architecture = "general.architecture";
    public const string Name = "general.name";
    public const string Description = "general.description";
    public const string FileType = "general.file_type";
    public const string QuantizationVersion = "general.quantization_version";

    // After "{arch}.".
    public const string ContextLength = "context_length";
    public const string EmbeddingLength = "embedding_length";
    public const string BlockCount = "block_count";
    public const string FeedForwardLength = "feed_forward_length";
    public const string HeadCount = "attention.head_count";
    public const string HeadCountKv = "attention.head_count_kv";
    public const string KeyLength = "attention.key_length";
    public const string ValueLength = "attention.value_length";
    public const string RmsEps = "attention.layer_norm_rms_epsilon";
    public const string SlidingWindow = "attention.sliding_window";
    public const string RopeDimensionCount = "rope.dimension_count";
    public const string RopeFreqBase = "rope.freq_base";

    /// <summary>RoPE base of the sliding-window layers (Gemma 3; the engine takes it from <see cref="ArchSpec.SwaRopeBase"/>).</summary>
    public const string RopeFreqBaseSwa = "rope.freq_base_swa";
    public const string RopeScalingType = "rope.scaling.type";
    public const string RopeScalingFactor = "rope.scaling.factor";

    /// <summary>The legacy key of the linear RoPE scaling factor.</summary>
    public const string RopeScaleLinear = "rope.scale_linear";
    public const string RopeAttnFactor = "rope.scaling.attn_factor";
    public const string RopeOriginalContext = "rope.scaling.original_context_length";
    public const string AttnSoftcap = "attn_logit_softcapping";
    public const string FinalSoftcap = "final_logit_softcapping";
    public const string VocabSize = "vocab_size";

    /// <summary>The full key of hyperparameter <paramref name="key"/> (a suffix above) for <paramref name="architecture"/>.</summary>
    public static string Of(string architecture, string key) => architecture + "." + key;
}
