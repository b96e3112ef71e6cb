namespace EdgeLlm.Generation;

/// <summary>
/// A compiled context-free grammar over bytes, the input of <see cref="GrammarMatcher"/>. Rules are lists of
/// alternatives; an alternative is a sequence of elements, each a byte set or a reference to a rule, ended
/// by <see cref="End"/>. Everything lives in flat arrays:
/// <list type="bullet">
/// <item><c>Code</c>: the elements of every alternative back to back; a byte set <c>s</c> is <c>s &lt;&lt; 1</c>,
/// a rule reference <c>r</c> is <c>(r &lt;&lt; 1) | 1</c>, and <see cref="End"/> closes an alternative.</item>
/// <item><c>AltStart[RuleAlts[r] .. RuleAlts[r + 1])</c>: where each alternative of rule <c>r</c> begins in <c>Code</c>.</item>
/// <item><c>Sets</c>: 256-bit byte sets, four ulongs each.</item>
/// </list>
/// Immutable and shareable between threads; every generation has its own matcher.
/// Built by <see cref="GrammarBuilder"/>, which refuses left recursion (a rule that can reach itself
/// without consuming a byte), so expanding a rule always terminates.
/// </summary>
public sealed class Grammar
{
    internal const int End = -1;

    internal int[] Code { get; }
    internal int[] AltStart { get; }
    internal int[] RuleAlts { get; }
    internal ulong[] Sets { get; }
    internal int Root { get; }

    /// <summary>What the grammar describes, for messages (e.g. "json_object", "JSON schema").</summary>
    public string Name { get; }

    internal Grammar(string name, int[] code, int[] altStart, int[] ruleAlts, ulong[] sets, int root)
    {
        Name = name;
        Code = code;
        AltStart = altStart;
        RuleAlts = ruleAlts;
        Sets = sets;
        Root = root;
    }

    /// <summary>Number of rules (for tests and diagnostics).</summary>
    public int RuleCount => RuleAlts.Length - 1;

    internal bool SetContains(int set, byte b) => (Sets[set * 4 + (b >> 6)] & (1UL << (b & 63))) != 0;

    private static Grammar? _jsonObject;

    /// <summary>Any JSON object (OpenAI's <c>response_format: {"type": "json_object"}</c>).</summary>
    public static Grammar JsonObject => _jsonObject ??= JsonSchemaCompiler.AnyObject();
}
