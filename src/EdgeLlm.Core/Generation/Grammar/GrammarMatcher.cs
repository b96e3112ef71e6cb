namespace EdgeLlm.Generation;

/// <summary>
/// The running state of a <see cref="Grammar"/>: a pushdown automaton over bytes that keeps every parse
/// still possible (a set of stacks, as llama.cpp's grammar sampler does). A stack's top is always a byte set
/// (the next byte it expects); the frames below are where to continue once the current rule is done. The
/// empty stack means "the root is complete" (<see cref="IsAccepting"/>).
/// <para>
/// Stacks are linked lists of nodes in an arena (position in the grammar's code, parent node), so stacks
/// share their bottoms and advancing one byte adds a node or two. <see cref="Check"/> runs bytes on a
/// scratch copy of the state and rolls the arena back afterwards: checking a candidate token allocates
/// nothing. <see cref="Accept"/> commits; the arena is compacted (live nodes copied) once it holds 16k nodes.
/// Not thread-safe: one matcher per generation.
/// </para>
/// </summary>
public sealed class GrammarMatcher
{
    private const int MaxStacks = 1024;
    private const int CompactAt = 1 << 14;

    private readonly Grammar _g;
    private readonly int[] _code;
    private int[] _pos = new int[1024];
    private int[] _parent = new int[1024];
    private int _count;
    private int[] _spare0 = [], _spare1 = [], _map = [];

    private readonly int[] _cur = new int[MaxStacks];
    private int _curCount;
    private readonly int[] _a = new int[MaxStacks];
    private readonly int[] _b = new int[MaxStacks];

    private ulong _first0, _first1, _first2, _first3;
    private bool _firstValid;

    public GrammarMatcher(Grammar grammar)
    {
        _g = grammar ?? throw new ArgumentNullException(nameof(grammar));
        _code = grammar.Code;
        Reset();
    }

    public Grammar Grammar => _g;

    /// <summary>Back to the start of the root rule.</summary>
    public void Reset()
    {
        _count = 0;
        _curCount = 0;
        int n = 0;
        for (int a = _g.RuleAlts[_g.Root]; a < _g.RuleAlts[_g.Root + 1]; a++) Expand(_g.AltStart[a], -1, _cur, ref n);
        _curCount = n;
        _firstValid = false;
    }

    /// <summary>The bytes so far form a complete match of the root rule.</summary>
    public bool IsAccepting
    {
        get
        {
            for (int i = 0; i < _curCount; i++) if (_cur[i] < 0) return true;
            return false;
        }
    }

    /// <summary>Some byte can still follow.</summary>
    public bool CanContinue
    {
        get
        {
            for (int i = 0; i < _curCount; i++) if (_cur[i] >= 0) return true;
            return false;
        }
    }

    /// <summary>Parses alive after the bytes so far (for tests and diagnostics).</summary>
    public int StackCount => _curCount;

    /// <summary>Whether <paramref name="b"/> can come next (a cheap filter before <see cref="Check"/>).</summary>
    public bool CanStartWith(byte b)
    {
        if (!_firstValid) ComputeFirst();
        ulong w = (b >> 6) switch { 0 => _first0, 1 => _first1, 2 => _first2, _ => _first3 };
        return (w & (1UL << (b & 63))) != 0;
    }

    private void ComputeFirst()
    {
        ulong a = 0, b = 0, c = 0, d = 0;
        var sets = _g.Sets;
        for (int i = 0; i < _curCount; i++)
        {
            int s = _cur[i];
            if (s < 0) continue;
            int set = (_code[_pos[s]] >> 1) * 4;
            a |= sets[set]; b |= sets[set + 1]; c |= sets[set + 2]; d |= sets[set + 3];
        }
        _first0 = a; _first1 = b; _first2 = c; _first3 = d;
        _firstValid = true;
    }

    /// <summary>Whether the state stays alive after <paramref name="bytes"/>; the state is not changed. No allocation.</summary>
    public bool Check(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return true;
        if (!CanStartWith(bytes[0])) return false;
        int mark = _count;
        bool alive = Run(bytes, out _, out _);
        _count = mark;
        return alive;
    }

    /// <summary>Consumes <paramref name="bytes"/> if the state stays alive after them (returns false and changes nothing otherwise).</summary>
    public bool Accept(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return true;
        int mark = _count;
        if (!Run(bytes, out int[] set, out int n))
        {
            _count = mark;
            return false;
        }
        Array.Copy(set, _cur, n);
        _curCount = n;
        _firstValid = false;
        if (_count >= CompactAt) Compact();
        return true;
    }

    /// <summary>Runs the bytes from the committed set through the scratch sets; the final set is returned.</summary>
    private bool Run(ReadOnlySpan<byte> bytes, out int[] set, out int count)
    {
        int[] src = _cur, dst = _a;
        int n = _curCount;
        foreach (byte b in bytes)
        {
            n = Advance(b, src, n, dst);
            if (n == 0)
            {
                set = dst;
                count = 0;
                return false;
            }
            src = dst;
            dst = ReferenceEquals(dst, _a) ? _b : _a;
        }
        set = src;
        count = n;
        return true;
    }

    private int Advance(byte b, int[] from, int fromCount, int[] to)
    {
        int n = 0;
        for (int i = 0; i < fromCount; i++)
        {
            int s = from[i];
            if (s < 0) continue;
            int p = _pos[s];
            if (!_g.SetContains(_code[p] >> 1, b)) continue;
            Expand(p + 1, _parent[s], to, ref n);
        }
        return n;
    }

    /// <summary>
    /// Adds to <paramref name="set"/> every stack that continues at code position <paramref name="pos"/> over
    /// <paramref name="parent"/>, with rule references expanded until each top is a byte set (or the stack is
    /// empty). A reference that ends its alternative pushes no return frame (tail call), so repetition rules
    /// keep stacks flat. Terminates: the builder refuses left recursion.
    /// </summary>
    private void Expand(int pos, int parent, int[] set, ref int n)
    {
        while (true)
        {
            int e = _code[pos];
            if (e == Grammar.End)
            {
                if (parent < 0)
                {
                    Add(set, ref n, -1);
                    return;
                }
                pos = _pos[parent];
                if ((_code[pos] & 1) == 0)
                {
                    Add(set, ref n, parent); // the frame below already waits for a byte: share it
                    return;
                }
                parent = _parent[parent];
                continue;
            }
            if ((e & 1) == 0)
            {
                Add(set, ref n, NewNode(pos, parent));
                return;
            }
            int rule = e >> 1;
            int ret = pos + 1;
            int retParent = _code[ret] == Grammar.End ? parent : NewNode(ret, parent);
            int last = _g.RuleAlts[rule + 1];
            for (int a = _g.RuleAlts[rule]; a < last; a++) Expand(_g.AltStart[a], retParent, set, ref n);
            return;
        }
    }

    private void Add(int[] set, ref int n, int node)
    {
        for (int i = 0; i < n; i++)
            if (SameStack(set[i], node)) return;
        if (n == set.Length)
            throw new GrammarException($"the {_g.Name} grammar is too ambiguous (more than {MaxStacks} parses alive at once)");
        set[n++] = node;
    }

    private bool SameStack(int x, int y)
    {
        while (x != y)
        {
            if (x < 0 || y < 0 || _pos[x] != _pos[y]) return false;
            x = _parent[x];
            y = _parent[y];
        }
        return true;
    }

    private int NewNode(int pos, int parent)
    {
        if (_count == _pos.Length)
        {
            Array.Resize(ref _pos, _pos.Length * 2);
            Array.Resize(ref _parent, _parent.Length * 2);
        }
        _pos[_count] = pos;
        _parent[_count] = parent;
        return _count++;
    }

    /// <summary>Copies the nodes the committed stacks use into fresh arrays (bottoms first), dropping the rest.</summary>
    private void Compact()
    {
        if (_spare0.Length != _pos.Length)
        {
            _spare0 = new int[_pos.Length];
            _spare1 = new int[_pos.Length];
            _map = new int[_pos.Length];
            Array.Fill(_map, -1);
        }
        int used = 0;
        for (int i = 0; i < _curCount; i++) _cur[i] = CopyNode(_cur[i], ref used);
        for (int i = 0; i < _count; i++) _map[i] = -1;
        (_pos, _spare0) = (_spare0, _pos);
        (_parent, _spare1) = (_spare1, _parent);
        _count = used;
    }

    private int[] _path = new int[64];

    /// <summary>Copies node <paramref name="s"/> and its unmapped ancestors (iteratively: stacks can be as deep as the JSON nests).</summary>
    private int CopyNode(int s, ref int used)
    {
        int len = 0;
        while (s >= 0 && _map[s] < 0)
        {
            if (len == _path.Length) Array.Resize(ref _path, len * 2);
            _path[len++] = s;
            s = _parent[s];
        }
        int p = s < 0 ? -1 : _map[s];
        for (int i = len - 1; i >= 0; i--)
        {
            int node = _path[i];
            int id = used++;
            _spare0[id] = _pos[node];
            _spare1[id] = p;
            _map[node] = id;
            p = id;
        }
        return p;
    }

    // A walk: trial states for the prefixes of one byte string at a time (level d = after its first d bytes), so
    // that strings visited in sorted order reuse the levels of the prefix they share with the previous one.
    private int[][] _levels = [];
    private int[] _levelCount = [], _levelMark = [];

    /// <summary>Starts a walk (see <see cref="WalkStep"/>); levels for byte strings up to <paramref name="maxLength"/> bytes.</summary>
    internal void BeginWalk(int maxLength)
    {
        if (_levels.Length < maxLength + 1)
        {
            _levels = new int[maxLength + 1][];
            for (int i = 1; i <= maxLength; i++) _levels[i] = new int[MaxStacks];
            _levelCount = new int[maxLength + 1];
            _levelMark = new int[maxLength + 1];
        }
        _levels[0] = _cur;
        _levelCount[0] = _curCount;
        _levelMark[0] = _count;
    }

    /// <summary>
    /// Computes level <paramref name="depth"/> + 1 from level <paramref name="depth"/> (which must be current:
    /// 0, or computed by the last step at depth - 1) over byte <paramref name="b"/>, dropping any deeper levels.
    /// Returns whether the state is still alive. No allocation.
    /// </summary>
    internal bool WalkStep(int depth, byte b)
    {
        _count = _levelMark[depth];
        int n = Advance(b, _levels[depth], _levelCount[depth], _levels[depth + 1]);
        _levelCount[depth + 1] = n;
        _levelMark[depth + 1] = _count;
        return n > 0;
    }

    /// <summary>Ends a walk: the arena goes back to the committed state.</summary>
    internal void EndWalk() => _count = _levelMark[0];

    /// <summary>Whether the whole of <paramref name="text"/> (UTF-8) is a complete match (a fresh matcher; tests).</summary>
    public static bool Matches(Grammar grammar, ReadOnlySpan<byte> text)
    {
        var m = new GrammarMatcher(grammar);
        return m.Accept(text) && m.IsAccepting;
    }

    /// <summary>Whether <paramref name="text"/> can be continued into a match (tests).</summary>
    public static bool IsLivePrefix(Grammar grammar, ReadOnlySpan<byte> text) => new GrammarMatcher(grammar).Accept(text);
}
