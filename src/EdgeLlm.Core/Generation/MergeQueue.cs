namespace EdgeLlm.Generation;

/// <summary>
/// A symbol of the SentencePiece and BPE merge loops: a run of characters [Start, Start+Length) in a doubly linked
/// list of live symbols (Prev/Next are indices, -1 at the ends).
/// </summary>
internal struct MergeSymbol
{
    public int Start, Length, Prev, Next;
}

/// <summary>A candidate merge of two adjacent symbols; Length is their joint length when it was proposed (stale once it differs).</summary>
internal readonly record struct MergeCandidate(int Left, int Right, int Length);

/// <summary>
/// The order of the merge queue: by priority (lowest first, or highest first when <see cref="Descending"/>), then
/// leftmost first: BPE merges the lowest rank (llama.cpp's llm_bigram_bpe), SentencePiece the highest score (llm_bigram_spm).
/// </summary>
internal sealed class MergeOrder<T> : IComparer<(T Priority, int Left)> where T : IComparable<T>
{
    public static readonly MergeOrder<T> Ascending = new(false);
    public static readonly MergeOrder<T> Descending = new(true);

    private readonly bool _descending;

    private MergeOrder(bool descending) => _descending = descending;

    public int Compare((T Priority, int Left) a, (T Priority, int Left) b)
    {
        int c = _descending ? b.Priority.CompareTo(a.Priority) : a.Priority.CompareTo(b.Priority);
        return c != 0 ? c : a.Left.CompareTo(b.Left);
    }
}
