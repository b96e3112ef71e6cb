namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// The token the device sampler wrote into the step buffer's first id slot (where get_rows reads the next step's
/// ids), and in which generation of the scratch buffers (Prepare frees and re-allocates the step buffer, possibly at
/// the same address, so the address alone would not do). The next <see cref="CudaBackend.GetRows"/> of exactly that
/// one token in the same generation need not upload the id: the flush then copies only the start position. Anything
/// else (another id, a batch, a Prepare in between) uploads the ids as before. Every GetRows takes the mark, so a
/// stale one never outlives the step it was written for.
/// </summary>
internal struct FedToken
{
    private int _id;
    private long _generation;
    private bool _set;
    private bool _unread; // the id is not known on the host yet: any one-token lookup takes the slot

    /// <summary>The sampler wrote <paramref name="id"/> into the step buffer of scratch generation <paramref name="generation"/>.</summary>
    public void Set(int id, long generation)
    {
        _id = id;
        _generation = generation;
        _set = true;
    }

    /// <summary>
    /// A pick still in flight will write the id (a decode step enqueued ahead, <see cref="CudaBackend.FeedLastPick"/>):
    /// the next one-token lookup in scratch generation <paramref name="generation"/> reads the slot whatever id it is given.
    /// </summary>
    public void SetUnread(long generation)
    {
        _generation = generation;
        _set = true;
        _unread = true;
    }

    /// <summary>True when <paramref name="ids"/> is the one fed token and <paramref name="generation"/> still the scratch it is in; clears the mark.</summary>
    public bool Take(ReadOnlySpan<int> ids, long generation)
    {
        bool fed = _set && _generation == generation && ids.Length == 1 && (_unread || ids[0] == _id);
        _set = false;
        _unread = false;
        return fed;
    }
}
