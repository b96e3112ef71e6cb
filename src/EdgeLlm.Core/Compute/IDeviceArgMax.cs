namespace EdgeLlm.Compute;

/// <summary>
/// A backend that picks the greedy token where the logits are (the GPU): only the chosen id and a finiteness flag
/// come back to the host instead of the whole logits row. <c>LlamaModel.ForwardGreedy</c> uses it.
/// </summary>
public interface IDeviceArgMax
{
    /// <summary>
    /// The id of the largest of <paramref name="count"/> logits at <paramref name="logits"/>[offset] (ties: the lowest
    /// id, as <c>Sampler</c>'s greedy pick); <paramref name="allFinite"/> is false when one of them is NaN or infinite.
    /// </summary>
    int ArgMax(BackendBuffer logits, long offset, int count, out bool allFinite);
}
