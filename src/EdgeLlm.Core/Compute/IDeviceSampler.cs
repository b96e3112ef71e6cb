namespace EdgeLlm.Compute;

/// <summary>
/// The settings of <c>Generation.Sampler</c>'s chain as a device sampler takes them (<see cref="IDeviceSampler"/>),
/// with the two values the host rounds itself precomputed: 1 / temperature and ln(min-p). Made by
/// <c>Generation.DeviceSampling.Settings</c>.
/// </summary>
public readonly record struct DeviceSamplerSettings(
    float RepeatPenalty, float PresencePenalty, float FrequencyPenalty,
    float Temperature, float InvTemperature, int TopK, float TopP, float MinP, float LogMinP);

/// <summary>
/// A backend that runs the whole sampler chain where the logits are (the GPU) and feeds the chosen token to the next
/// step's embedding lookup itself: only the token id (and a finiteness flag) comes back to the host, and the next
/// <see cref="IBackend.GetRows"/> of that one token uploads no id. <c>LlamaModel.ForwardSampled</c> uses it.
/// </summary>
public interface IDeviceSampler
{
    /// <summary>
    /// The token <c>Sampler.Sample</c> would pick from the <paramref name="count"/> logits at
    /// <paramref name="logits"/>[offset] with <paramref name="settings"/>, given <paramref name="penalties"/> (pairs of
    /// token id and its count in the penalty window, each id once; empty when the penalties are off) and
    /// <paramref name="uniform"/> (the sampler's <c>NextUniform()</c>; ignored when greedy). <paramref name="allFinite"/>
    /// is false when a raw logit was NaN or infinite (the id is then meaningless).
    /// </summary>
    int Sample(BackendBuffer logits, long offset, int count, in DeviceSamplerSettings settings, ReadOnlySpan<int> penalties, double uniform,
        out bool allFinite);
}
