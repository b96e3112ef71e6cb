using EdgeLlm.Compute;

namespace EdgeLlm.Generation;

/// <summary>
/// When a generation step may let the backend pick the token and still give exactly the token <see cref="Sampler"/>
/// would. Two device paths, chosen once per generation from the backend the model was loaded on:
/// <list type="bullet">
/// <item><see cref="UseDeviceArgMax"/>: greedy decoding of the raw logits (<see cref="Model.LlamaModel.ForwardGreedy"/>).</item>
/// <item><see cref="UseDeviceSampler"/>: every other setting of the chain (penalties, temperature, top-k, top-p, min-p and
/// the draw) on the device (<see cref="Model.LlamaModel.ForwardSampled"/>), with the uniform drawn on the host from the
/// sampler's own stream (<see cref="Sampler.NextUniform"/>) and the penalty window counted on the host
/// (<see cref="PenaltyWindow"/>).</item>
/// </list>
/// What needs the logits row on the host keeps the copy: a grammar (it masks tokens against the tokenizer) and
/// log-probabilities (they are the row). Per-token logit bias is not supported by the sampler at all.
/// <see cref="Variable"/>=0 in the environment keeps every request on the host sampler (the device check compares the
/// two paths on the same device's logits).
/// </summary>
public static class DeviceSampling
{
    /// <summary>EDGELLM_DEVICE_SAMPLING=0: the host sampler (and the logits copy) even on a backend that picks tokens.</summary>
    public const string Variable = "EDGELLM_DEVICE_SAMPLING";

    /// <summary>False when the environment turned the device paths off (<see cref="Variable"/>=0), read once.</summary>
    public static bool Allowed { get; } = AllowedBy(Environment.GetEnvironmentVariable(Variable));

    /// <summary>The device paths stay on unless the variable is exactly "0".</summary>
    internal static bool AllowedBy(string? value) => value?.Trim() != "0";

    /// <summary>EDGELLM_DEVICE_PIPELINE=0: a backend that picks tokens still waits for each token before it launches the next step.</summary>
    public const string PipelineVariable = "EDGELLM_DEVICE_PIPELINE";

    /// <summary>False when <see cref="PipelineVariable"/>=0 (read once): no decode step runs ahead of the host's read of the last token.</summary>
    public static bool PipelineAllowed { get; } = AllowedBy(Environment.GetEnvironmentVariable(PipelineVariable));

    public static bool UseDeviceArgMax(SamplerOptions sampler, bool backendCan, bool grammar, bool logprobs) =>
        backendCan && Allowed && !grammar && !logprobs && sampler.Temperature <= 0 && PenaltiesOff(sampler);

    /// <summary>True when the whole chain may run on the device (and the argmax alone would not do).</summary>
    public static bool UseDeviceSampler(SamplerOptions sampler, bool backendCan, bool grammar, bool logprobs) =>
        backendCan && Allowed && !grammar && !logprobs && !UseDeviceArgMax(sampler, true, grammar, logprobs);

    /// <summary>True when <see cref="Sampler"/> leaves the logits as they are before its greedy pick.</summary>
    public static bool PenaltiesOff(SamplerOptions o) =>
        o.RepeatLastN == 0 || (o.RepeatPenalty == 1f && o.FrequencyPenalty == 0f && o.PresencePenalty == 0f);

    /// <summary>The device form of <paramref name="o"/>: 1 / temperature and ln(min-p) rounded as <see cref="Sampler"/> rounds them.</summary>
    public static DeviceSamplerSettings Settings(SamplerOptions o) => new(
        o.RepeatPenalty, o.PresencePenalty, o.FrequencyPenalty,
        o.Temperature, 1f / o.Temperature, o.TopK, o.TopP, o.MinP, o.MinP > 0f ? MathF.Log(o.MinP) : 0f);
}
