namespace EdgeLlm.Generation;

/// <summary>
/// Cuts the special tokens written literally in a text out of it, with llama.cpp's result
/// (tokenizer_st_partition): tokens are taken longest text first, each cutting every leftmost non-overlapping
/// occurrence that lies wholly in text not already cut. Instead of one search of the text per special token
/// (Gemma has 6,400 of them, and every newline is one) all occurrences are found in one pass over a trie of the
/// token texts, then accepted in that priority order, so the cost is linear in the text (times the longest
/// match) plus a sort of the occurrences found.
/// </summary>
internal sealed class SpecialTokenMatcher
{
    private readonly Dictionary<long, int> _children = new(); // (node << 16 | char) -> child node
    private readonly List<int> _terminal = [-1];               // node -> rank of the token ending there, or -1
    private readonly int[] _ids;                               // rank -> token id
    private readonly int[] _lengths;                           // rank -> text length in chars
    private readonly bool[] _alwaysParsed;                     // rank -> user-defined (matched without parse_special)

    /// <param name="byPriority">Special token ids, highest priority (longest) first.</param>
    public SpecialTokenMatcher(Vocabulary vocab, int[] byPriority)
    {
        _ids = byPriority;
        _lengths = new int[byPriority.Length];
        _alwaysParsed = new bool[byPriority.Length];
        for (int rank = 0; rank < byPriority.Length; rank++)
        {
            int id = byPriority[rank];
            string text = vocab.Token(id);
            _lengths[rank] = text.Length;
            _alwaysParsed[rank] = vocab.Type(id) == TokenType.UserDefined;
            int node = 0;
            foreach (char c in text)
            {
                long key = ((long)node << 16) | c;
                if (!_children.TryGetValue(key, out int child))
                {
                    child = _terminal.Count;
                    _terminal.Add(-1);
                    _children[key] = child;
                }
                node = child;
            }
            if (_terminal[node] < 0) _terminal[node] = rank; // a second token with the same text never matches more
        }
    }

    /// <summary>The cut-out tokens as (start, length, id), in text order; empty when there are none.</summary>
    public List<(int Start, int Length, int Id)> Find(string text, bool parseSpecial)
    {
        var found = new List<(int Rank, int Start)>();
        for (int pos = 0; pos < text.Length; pos++)
        {
            int node = 0;
            for (int j = pos; j < text.Length; j++)
            {
                if (!_children.TryGetValue(((long)node << 16) | text[j], out node)) break;
                int rank = _terminal[node];
                if (rank >= 0 && (parseSpecial || _alwaysParsed[rank])) found.Add((rank, pos));
            }
        }
        var cuts = new List<(int Start, int Length, int Id)>();
        if (found.Count == 0) return cuts;

        found.Sort(); // priority first, then left to right
        var taken = new bool[text.Length];
        int lastRank = -1, lastEnd = 0;
        foreach (var (rank, start) in found)
        {
            if (rank != lastRank) { lastRank = rank; lastEnd = 0; }
            if (start < lastEnd) continue; // overlaps this token's previous cut
            int end = start + _lengths[rank];
            bool free = true;
            for (int k = start; k < end && free; k++) free = !taken[k];
            if (!free) continue; // crosses a cut of a longer token
            for (int k = start; k < end; k++) taken[k] = true;
            cuts.Add((start, end - start, _ids[rank]));
            lastEnd = end;
        }
        cuts.Sort((a, b) => a.Start.CompareTo(b.Start));
        return cuts;
    }
}
