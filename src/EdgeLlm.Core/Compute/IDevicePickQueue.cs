namespace EdgeLlm.Compute;

/// <summary>
/// A device picker (<see cref="IDeviceArgMax"/>, <see cref="IDeviceSampler"/>) that can run one decode step ahead of
/// the host: the step's pick is launched and its 8-byte read-back started without waiting, the token stays on the
/// device where the next step's embedding lookup reads it (<see cref="FeedLastPick"/>), and the host takes the ids
/// later, oldest first. <c>LlamaModel.EnqueueDecode</c> / <c>TakePick</c> / <c>DiscardPicks</c> use it;
/// <c>Generator</c> enqueues step N+1 before it reads token N and drops the extra step when token N ends generation.
/// </summary>
public interface IDevicePickQueue
{
    /// <summary>The most picks that may be in flight at once (the read-back slots).</summary>
    int PickDepth { get; }

    /// <summary>Picks launched and not yet taken.</summary>
    int PendingPicks { get; }

    /// <summary>
    /// Launches the recorded step with a pick over the <paramref name="count"/> logits at <paramref name="logits"/>[offset]:
    /// the argmax when <paramref name="settings"/> is null, else the sampler chain without penalties and with
    /// <paramref name="uniform"/>. Does not wait; the token is also written where the next step's lookup may read it.
    /// </summary>
    void EnqueuePick(BackendBuffer logits, long offset, int count, DeviceSamplerSettings? settings, double uniform);

    /// <summary>The next one-token <see cref="IBackend.GetRows"/> takes the token the last enqueued pick writes on the device (the id it is given is a placeholder).</summary>
    void FeedLastPick();

    /// <summary>Waits for the oldest pick in flight and returns its token; <paramref name="allFinite"/> as in <see cref="IDeviceArgMax.ArgMax"/>.</summary>
    int TakePick(out bool allFinite);
}
