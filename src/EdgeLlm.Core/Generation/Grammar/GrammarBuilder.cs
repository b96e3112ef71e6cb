namespace EdgeLlm.Generation;

/// <summary>Thrown when a grammar or a JSON schema cannot be compiled; the message is one line naming the cause.</summary>
public sealed class GrammarException(string message) : EdgeLlmException(message);

/// <summary>
/// Assembles a <see cref="Grammar"/>: make rules, give them alternatives made of byte sets, literals and rule
/// references, then <see cref="Build"/>. Elements are ints in the grammar's encoding (see <see cref="Grammar"/>).
/// </summary>
internal sealed class GrammarBuilder
{
    private readonly List<List<int[]>> _rules = new();
    private readonly List<ulong> _sets = new();
    private readonly Dictionary<(ulong, ulong, ulong, ulong), int> _setIds = new();

    public int NewRule()
    {
        _rules.Add(new List<int[]>());
        return _rules.Count - 1;
    }

    /// <summary>Adds an alternative (a sequence of encoded elements; empty matches the empty string).</summary>
    public void Alt(int rule, params int[] elements) => _rules[rule].Add(elements);

    public static int Ref(int rule) => (rule << 1) | 1;

    /// <summary>The byte set holding the inclusive ranges given as (lo, hi) pairs.</summary>
    public int Set(params (int Lo, int Hi)[] ranges)
    {
        ulong a = 0, b = 0, c = 0, d = 0;
        foreach (var (lo, hi) in ranges)
            for (int x = lo; x <= hi; x++)
            {
                ulong bit = 1UL << (x & 63);
                switch (x >> 6)
                {
                    case 0: a |= bit; break;
                    case 1: b |= bit; break;
                    case 2: c |= bit; break;
                    default: d |= bit; break;
                }
            }
        if (!_setIds.TryGetValue((a, b, c, d), out int id))
        {
            id = _sets.Count / 4;
            _sets.Add(a); _sets.Add(b); _sets.Add(c); _sets.Add(d);
            _setIds[(a, b, c, d)] = id;
        }
        return id << 1;
    }

    public int Byte(int b) => Set((b, b));

    /// <summary>The bytes of <paramref name="utf8"/> as a sequence of one-byte sets.</summary>
    public int[] Lit(ReadOnlySpan<byte> utf8)
    {
        var e = new int[utf8.Length];
        for (int i = 0; i < utf8.Length; i++) e[i] = Byte(utf8[i]);
        return e;
    }

    public int[] Lit(string ascii) => Lit(System.Text.Encoding.UTF8.GetBytes(ascii));

    /// <summary>A rule matching <paramref name="item"/> (a sequence) repeated min..max times (max &lt; 0: no limit).</summary>
    public int Repeat(int[] item, int min, int max)
    {
        if (item.Length == 0) throw new ArgumentException("a repeated item must not be empty", nameof(item));
        int tail = NewRule();
        if (max < 0)
        {
            Alt(tail);
            Alt(tail, [.. item, Ref(tail)]);
        }
        else
        {
            // tail_k matches 0..k more items; tail_0 matches nothing.
            Alt(tail);
            for (int k = 1; k <= max - min; k++)
            {
                int next = NewRule();
                Alt(next);
                Alt(next, [.. item, Ref(tail)]);
                tail = next;
            }
        }
        int rule = NewRule();
        var seq = new List<int>(item.Length * min + 1);
        for (int i = 0; i < min; i++) seq.AddRange(item);
        seq.Add(Ref(tail));
        Alt(rule, seq.ToArray());
        return rule;
    }

    public int RuleCount => _rules.Count;

    /// <summary>Flattens the rules; refuses a grammar in which a rule can reach itself without consuming a byte.</summary>
    public Grammar Build(string name, int root)
    {
        CheckNoLeftRecursion();
        var code = new List<int>();
        var altStart = new List<int>();
        var ruleAlts = new int[_rules.Count + 1];
        for (int r = 0; r < _rules.Count; r++)
        {
            ruleAlts[r] = altStart.Count;
            foreach (var alt in _rules[r])
            {
                altStart.Add(code.Count);
                code.AddRange(alt);
                code.Add(Grammar.End);
            }
        }
        ruleAlts[_rules.Count] = altStart.Count;
        return new Grammar(name, code.ToArray(), altStart.ToArray(), ruleAlts, _sets.ToArray(), root);
    }

    private void CheckNoLeftRecursion()
    {
        int n = _rules.Count;
        // Nullable rules by fixpoint.
        var nullable = new bool[n];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < n; r++)
            {
                if (nullable[r]) continue;
                foreach (var alt in _rules[r])
                {
                    bool all = true;
                    foreach (int e in alt)
                        if ((e & 1) == 0 || !nullable[e >> 1]) { all = false; break; }
                    if (all) { nullable[r] = true; changed = true; break; }
                }
            }
        }
        // Edges r -> s where s can start r's match without input; a cycle is left recursion.
        var edges = new List<int>[n];
        for (int r = 0; r < n; r++)
        {
            edges[r] = new List<int>();
            foreach (var alt in _rules[r])
                foreach (int e in alt)
                {
                    if ((e & 1) == 0) break;
                    edges[r].Add(e >> 1);
                    if (!nullable[e >> 1]) break;
                }
        }
        var color = new byte[n]; // 0 new, 1 on the path, 2 done
        var stack = new Stack<(int Rule, int Next)>();
        for (int start = 0; start < n; start++)
        {
            if (color[start] != 0) continue;
            stack.Push((start, 0));
            color[start] = 1;
            while (stack.Count > 0)
            {
                var (r, i) = stack.Pop();
                if (i < edges[r].Count)
                {
                    stack.Push((r, i + 1));
                    int s = edges[r][i];
                    if (color[s] == 1)
                        throw new GrammarException("the schema refers to itself without any JSON in between (a left-recursive $ref cycle)");
                    if (color[s] == 0)
                    {
                        color[s] = 1;
                        stack.Push((s, 0));
                    }
                }
                else color[r] = 2;
            }
        }
    }
}
