using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Generation;

/// <summary>
/// The one-pass special-token cutter against llama.cpp's tokenizer_st_partition written out directly (for each
/// special token, longest first: cut every leftmost occurrence inside every raw fragment), on random texts over a
/// small alphabet whose special tokens overlap each other in every way.
/// </summary>
public class SpecialTokenMatcherTests
{
    // Ids 0-3 plain, then specials of mixed types; "<a>" and "<a><a>" and "a>" overlap, "xx" overlaps itself.
    private static readonly string[] Tokens = ["a", "b", "<", ">", "<a>", "<a><a>", "a><", "xx", "\n", "\n\n", "<b>", "x"];
    private static readonly int[] Types = [1, 1, 1, 1, 3, 4, 3, 4, 4, 4, 2, 1];

    private static Vocabulary Vocab() => VocabularyTests.Load(w => w
        .Set("tokenizer.ggml.model", "llama")
        .Set("tokenizer.ggml.tokens", Tokens)
        .Set("tokenizer.ggml.scores", new float[Tokens.Length])
        .Set("tokenizer.ggml.token_type", Types));

    /// <summary>The direct form: a fragment list rewritten once per special token.</summary>
    private static List<(int Start, int Length, int Id)> Reference(Vocabulary v, string text, bool parseSpecial)
    {
        var list = new List<(int Start, int Length, int Id)> { (0, text.Length, -1) };
        foreach (int id in v.SpecialTokensByLength)
        {
            if (!parseSpecial && v.Type(id) is TokenType.Control or TokenType.Unknown) continue;
            string s = v.Token(id);
            var next = new List<(int, int, int)>();
            foreach (var f in list)
            {
                if (f.Id >= 0) { next.Add(f); continue; }
                int pos = f.Start, end = f.Start + f.Length;
                while (true)
                {
                    int at = text.IndexOf(s, pos, end - pos, StringComparison.Ordinal);
                    if (at < 0) break;
                    if (at > pos) next.Add((pos, at - pos, -1));
                    next.Add((at, s.Length, id));
                    pos = at + s.Length;
                }
                if (end > pos) next.Add((pos, end - pos, -1));
            }
            list = next;
        }
        return list.Where(f => f.Id >= 0).ToList();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CutsWhatLlamaCppsFragmentLoopCuts(bool parseSpecial)
    {
        var v = Vocab();
        var matcher = new SpecialTokenMatcher(v, v.SpecialTokensByLength);
        var rng = new Random(5);
        const string alphabet = "<>abx\n";
        for (int trial = 0; trial < 3000; trial++)
        {
            var chars = new char[rng.Next(0, 24)];
            for (int i = 0; i < chars.Length; i++) chars[i] = alphabet[rng.Next(alphabet.Length)];
            string text = new(chars);
            Assert.Equal(Reference(v, text, parseSpecial), matcher.Find(text, parseSpecial));
        }
    }

    [Fact]
    public void LongestTokenWinsAndUserDefinedTokensAreAlwaysCut()
    {
        var v = Vocab();
        var matcher = new SpecialTokenMatcher(v, v.SpecialTokensByLength);
        // "<a><a>" (6 chars) before "<a>"; "a><" is control and cut only with parse_special.
        Assert.Equal([(0, 6, 5), (6, 3, 4)], matcher.Find("<a><a><a>", parseSpecial: true));
        Assert.Equal([(0, 6, 5)], matcher.Find("<a><a><a>", parseSpecial: false));
        Assert.Equal([(0, 2, 9), (2, 1, 8)], matcher.Find("\n\n\n", parseSpecial: false));
        Assert.Equal([(0, 2, 7), (2, 2, 7)], matcher.Find("xxxxx", parseSpecial: false));
    }
}
