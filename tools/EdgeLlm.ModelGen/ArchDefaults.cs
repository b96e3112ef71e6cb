namespace EdgeLlm.ModelGen;

/// <summary>
/// The numbers a family's real checkpoints carry that the shape does not choose: RMSNorm epsilon, RoPE base,
/// sliding window and softcaps (from the families' published configs: Qwen 2/3 and Gemma use eps 1e-6 and the
/// others 1e-5; Qwen and Gemma 3 rotate with base 1e6; Gemma 2 caps attention logits at 50 and the output at 30
/// and slides a 4096 window; Gemma 3 1B slides 512).
/// </summary>
public sealed record ArchDefaults(float RmsEps, float RopeBase, int Window = 0, float AttnSoftcap = 0, float FinalSoftcap = 0)
{
    /// <summary>The architectures <c>--arch</c> accepts (every family the engine runs).</summary>
    public static string[] Names => Model.LlamaConfig.SupportedArchitectures;

    public static ArchDefaults For(string arch) => arch switch
    {
        "qwen2" or "qwen3" => new(1e-6f, 1000000f),
        "gemma" => new(1e-6f, 10000f),
        "gemma2" => new(1e-6f, 10000f, Window: 4096, AttnSoftcap: 50f, FinalSoftcap: 30f),
        "gemma3" => new(1e-6f, 1000000f, Window: 512),
        _ => new(1e-5f, 10000f), // llama, mistral, phi3
    };
}
