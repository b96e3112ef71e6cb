namespace EdgeLlm.Generation;

/// <summary>
/// When a generation step may let the backend pick the token (<see cref="Model.LlamaModel.ForwardGreedy"/>, no
/// logits copy) and still give exactly the token <see cref="Sampler"/> would: greedy decoding of the raw logits.
/// Everything that needs the logits row on the host keeps the copy: a temperature draw (the device has no
/// chain that reproduces the CPU sampler's tokens for the same seed), repetition penalties (they change the
/// logits before the argmax), a grammar (it masks tokens), and log-probabilities (they are the row).
/// </summary>
public static class DeviceSampling
{
    public static bool UseDeviceArgMax(SamplerOptions sampler, bool backendCan, bool grammar, bool logprobs) =>
        backendCan && !grammar && !logprobs && sampler.Temperature <= 0 && PenaltiesOff(sampler);

    /// <summary>True when <see cref="Sampler"/> leaves the logits as they are before its greedy pick.</summary>
    public static bool PenaltiesOff(SamplerOptions o) =>
        o.RepeatLastN == 0 || (o.RepeatPenalty == 1f && o.FrequencyPenalty == 0f && o.PresencePenalty == 0f);
}
