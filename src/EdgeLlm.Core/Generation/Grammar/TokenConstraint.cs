namespace EdgeLlm.Generation;

/// <summary>
/// Ties a <see cref="GrammarMatcher"/> to a vocabulary for the sampler: a token is allowed when its bytes (what
/// it prints) keep the grammar alive; an end token (end of generation, or a chat template's stop token) only
/// when the text so far is a complete match. Tokens that print nothing (control, unknown) are never allowed.
/// The sampler checks its pick first and masks the whole candidate list only when the pick is refused (as
/// llama.cpp does), so the usual cost per token is one <see cref="GrammarMatcher.Check"/>. No allocation per token.
/// </summary>
public sealed class TokenConstraint
{
    private readonly GrammarMatcher _matcher;
    private readonly Tokenizer _tokenizer;
    private readonly int[] _stops;
    private readonly bool _allowEnd;

    /// <param name="allowEnd">False when end tokens are ignored (--ignore-eos): then generation ends only when the grammar allows nothing more.</param>
    public TokenConstraint(Grammar grammar, Tokenizer tokenizer, int[]? stopTokens = null, bool allowEnd = true)
    {
        _matcher = new GrammarMatcher(grammar);
        _tokenizer = tokenizer;
        _stops = stopTokens ?? [];
        _allowEnd = allowEnd;
    }

    public GrammarMatcher Matcher => _matcher;

    private bool IsEnd(int id) => _tokenizer.Vocab.EndsGeneration(id, _stops);

    /// <summary>Whether <paramref name="id"/> may come next.</summary>
    public bool Allows(int id)
    {
        if (IsEnd(id)) return _allowEnd && _matcher.IsAccepting;
        var piece = _tokenizer.TokenPiece(id);
        return !piece.IsEmpty && _matcher.Check(piece);
    }

    private bool[]? _mask;

    /// <summary>
    /// Which tokens may come next, for the whole vocabulary at once (a buffer reused by the next call). The
    /// tokens are visited in the byte order of their text (<see cref="TokenTrie"/>), so a prefix shared with
    /// the previous token is not run again and a dead prefix rules out every token that starts with it.
    /// </summary>
    public bool[] ComputeMask()
    {
        var vocab = _tokenizer.Vocab;
        var mask = _mask ??= new bool[vocab.Count];
        Array.Clear(mask);
        var trie = TokenTrie.For(_tokenizer);
        var m = _matcher;
        m.BeginWalk(trie.MaxLength);
        int valid = 0;             // levels 0..valid hold the states of the previous token's prefixes
        int deadAt = int.MaxValue; // the previous token's prefix of this length is dead
        var order = trie.Order;
        var lcp = trie.Lcp;
        for (int k = 0; k < order.Length; k++)
        {
            int id = order[k];
            int shared = lcp[k];
            if (deadAt <= shared) continue; // starts with a prefix already found dead
            deadAt = int.MaxValue;
            if (valid > shared) valid = shared;
            var piece = _tokenizer.TokenPiece(id);
            bool ok = true;
            for (int d = valid; d < piece.Length; d++)
            {
                if (!m.WalkStep(d, piece[d]))
                {
                    deadAt = d + 1;
                    valid = d; // level d + 1 is dead, not reusable
                    ok = false;
                    break;
                }
                valid = d + 1;
            }
            if (ok && !IsEnd(id)) mask[id] = true;
        }
        m.EndWalk();
        bool end = _allowEnd && m.IsAccepting;
        var eog = vocab.EndOfGenerationIds;
        for (int i = 0; i < eog.Count; i++) mask[eog[i]] = end;
        foreach (int t in _stops) mask[t] = end;
        return mask;
    }

    /// <summary>Advances over a token that <see cref="Allows"/> accepted (an end token changes nothing).</summary>
    public void Accept(int id)
    {
        if (IsEnd(id)) return;
        if (!_matcher.Accept(_tokenizer.TokenPiece(id)))
            throw new InvalidOperationException($"token {id} does not continue the {_matcher.Grammar.Name} grammar (the sampler should have refused it)");
    }

    /// <summary>The text is a complete match and nothing may follow: generation is over.</summary>
    public bool Finished => _matcher.IsAccepting && !_matcher.CanContinue;
}
