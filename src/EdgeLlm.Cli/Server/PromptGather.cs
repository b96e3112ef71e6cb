namespace EdgeLlm.Cli.Server;

/// <summary>
/// Whether a prompt-only step should wait a little for more requests. A request that ends frees its slot, and its
/// client usually sends the next one a moment later (closed-loop clients, a chat UI's next turn); several clients
/// whose requests ended in the same step come back within milliseconds of each other. When the first of them runs its
/// prompt alone, the others start one step later and end one step later, so from then on every round has a step
/// with a slot idle. This keeps the completion times not yet answered by an arrival (one per request, oldest first;
/// an arrival takes the oldest, so a lone client's own next request expects nobody), and
/// <see cref="Expected"/> counts those recent enough that their clients are probably on their way back.
/// Touched by the scheduler thread only.
/// </summary>
internal sealed class PromptGather(int slots)
{
    private readonly long[] _ends = new long[Math.Max(1, slots)];
    private int _head, _count;

    /// <summary>Completion times waiting for an arrival.</summary>
    public int Count => _count;

    /// <summary>A request ended at <paramref name="now"/> (when full, the oldest entry is forgotten).</summary>
    public void Completed(long now)
    {
        if (_count == _ends.Length)
        {
            _head = (_head + 1) % _ends.Length;
            _count--;
        }
        _ends[(_head + _count) % _ends.Length] = now;
        _count++;
    }

    /// <summary>A request arrived: it answers the oldest completion.</summary>
    public void Arrived()
    {
        if (_count == 0) return;
        _head = (_head + 1) % _ends.Length;
        _count--;
    }

    /// <summary>Completions not yet answered that happened at most <paramref name="window"/> before <paramref name="now"/>.</summary>
    public int Expected(long now, long window)
    {
        int n = 0;
        for (int i = 0; i < _count; i++)
            if (now - _ends[(_head + i) % _ends.Length] <= window) n++;
        return n;
    }
}
