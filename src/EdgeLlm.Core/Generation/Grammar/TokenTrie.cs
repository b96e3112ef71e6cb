using System.Runtime.CompilerServices;

namespace EdgeLlm.Generation;

/// <summary>
/// The vocabulary's printing tokens sorted by their bytes, with each one's common prefix length with the one
/// before: a trie laid out flat, walked by <see cref="TokenConstraint.ComputeMask"/>. Built once per tokenizer.
/// </summary>
internal sealed class TokenTrie
{
    private static readonly ConditionalWeakTable<Tokenizer, TokenTrie> Cache = new();

    /// <summary>Token ids with a non-empty text, in byte order.</summary>
    public int[] Order { get; }

    /// <summary>Lcp[k]: bytes that Order[k]'s text shares with Order[k - 1]'s (0 for the first).</summary>
    public int[] Lcp { get; }

    /// <summary>The longest token text, in bytes.</summary>
    public int MaxLength { get; }

    public static TokenTrie For(Tokenizer tokenizer) => Cache.GetValue(tokenizer, t => new TokenTrie(t));

    private TokenTrie(Tokenizer tokenizer)
    {
        int v = tokenizer.Vocab.Count;
        var pieces = new byte[v][];
        var ids = new List<int>(v);
        for (int id = 0; id < v; id++)
        {
            pieces[id] = tokenizer.TokenBytes(id);
            if (pieces[id].Length > 0) ids.Add(id);
        }
        ids.Sort((a, b) =>
        {
            int c = pieces[a].AsSpan().SequenceCompareTo(pieces[b]);
            return c != 0 ? c : a.CompareTo(b);
        });
        Order = ids.ToArray();
        Lcp = new int[Order.Length];
        int max = 0;
        for (int k = 0; k < Order.Length; k++)
        {
            byte[] p = pieces[Order[k]];
            max = Math.Max(max, p.Length);
            if (k == 0) continue;
            Lcp[k] = p.AsSpan().CommonPrefixLength(pieces[Order[k - 1]]);
        }
        MaxLength = max;
    }
}
