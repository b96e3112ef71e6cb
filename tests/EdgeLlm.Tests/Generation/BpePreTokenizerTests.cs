using System.Text.RegularExpressions;
using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Generation;

public class BpePreTokenizerTests
{
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    private const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // GPT-4o as llama.cpp runs it (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_GPT4O): the case classes are rewritten
    // as "a letter that is not a-z" / "a letter that is not A-Z". .NET's backtracking engine runs it as written.
    private const string Gpt4oPattern =
        @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
        + @"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
        + @"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static string[] Words(string text, PreTokenizerKind kind)
    {
        var ranges = BpePreTokenizer.Split(text, kind);
        return ranges.Select(r => text.Substring(r.Start, r.Length)).ToArray();
    }

    [Theory]
    [InlineData("Hello world's  123", new[] { "Hello", " world", "'s", " ", " 123" })]
    [InlineData("a\n\nb", new[] { "a", "\n", "\n", "b" })]
    [InlineData("x   ", new[] { "x", "   " })]
    [InlineData("I'LL we're", new[] { "I", "'", "LL", " we", "'re" })]
    [InlineData("1234567", new[] { "1234567" })]
    [InlineData("Привет мир 🦙!", new[] { "Привет", " мир", " 🦙!" })]
    [InlineData("\t\tgo", new[] { "\t", "\t", "go" })]
    public void Gpt2Splits(string text, string[] expected) => Assert.Equal(expected, Words(text, PreTokenizerKind.Gpt2));

    [Theory]
    [InlineData("Hello world's  123", new[] { "Hello", " world", "'s", " ", " ", "123" })]
    [InlineData("a\n\nb", new[] { "a", "\n\n", "b" })]
    [InlineData("I'LL we're", new[] { "I", "'LL", " we", "'re" })]
    [InlineData("1234567", new[] { "123", "456", "7" })]
    [InlineData("(hi)!\n\nok", new[] { "(hi", ")!\n\n", "ok" })]
    [InlineData("\tgo  \n x", new[] { "\tgo", "  \n", " x" })]
    [InlineData("Привет мир 🦙!", new[] { "Привет", " мир", " 🦙!" })]
    public void Llama3Splits(string text, string[] expected) => Assert.Equal(expected, Words(text, PreTokenizerKind.Llama3));

    [Fact]
    public void DefaultChainsPunctuationGpt2NumbersAndDigitTriples()
    {
        Assert.Equal(new[] { "Hello", ",", " world", "!", " ", "123", "45" }, Words("Hello, world! 12345", PreTokenizerKind.Default));
    }

    [Fact]
    public void LettersOutsideTheBmpStayTogether()
    {
        // U+1D400.. are letters (Lu); a UTF-16 regex engine sees surrogates and would split them off.
        Assert.Equal(new[] { "𝐀𝐁c", " 𝟏𝟐" }, Words("𝐀𝐁c 𝟏𝟐", PreTokenizerKind.Gpt2));
    }

    public static TheoryData<string> RegexCases => new()
    {
        "Hello world's  123", "a\n\nb", "  leading and trailing  ", "tabs\tand\r\nCRLF\r\n\r\n", "it's 'quoted' isn't",
        "WE'VE I'M YOU'D", "x=1+2; y = [3, 4]  // comment\n", "中文字符和English混合", "naïve café ½ ¼", "\u00A0nbsp\u2003em",
        "3333333 22 1", "...!!!???", "line\n\n\n  indent", "emoji 🦙🦙 pair", "",
        "ÉCOLE HelloWorld XMLHttpRequest iPhone McDONALD'S ǅungla ΣΊΣΥΦΟΣ straße", "aBcDeFgH ÀbC'S ÉÀA éA Aé",
        "I'M WE'LL they'RE x/y/z a//\n\nb /path/to\r\n", "ab12345cd 1.5e10 0x1F ٣٤٥ ½", "\t\tTabbed\tText\t\n",
    };

    [Theory]
    [MemberData(nameof(RegexCases))]
    public void ScannersAgreeWithTheRegexOnBmpText(string text)
    {
        string[] Regexed(string pattern) => Regex.Matches(text, pattern).Select(m => m.Value).ToArray();
        Assert.Equal(Regexed(Gpt2Pattern), Words(text, PreTokenizerKind.Gpt2));
        Assert.Equal(Regexed(Llama3Pattern), Words(text, PreTokenizerKind.Llama3));
        Assert.Equal(Regexed(Qwen2Pattern), Words(text, PreTokenizerKind.Qwen2));
        Assert.Equal(Regexed(Gpt4oPattern), Words(text, PreTokenizerKind.Gpt4o));
    }

    [Theory]
    [MemberData(nameof(RegexCases))]
    public void SmolLmSplitsNumbersThenAppliesGpt2(string text)
    {
        // llama.cpp's smollm/starcoder: "\p{N}" then the GPT-2 rule, each stage keeping its matches and the gaps.
        var expected = new List<string>();
        foreach (string piece in Regex.Split(text, @"(\p{N})"))
        {
            if (piece.Length == 0) continue;
            expected.AddRange(Regex.Matches(piece, Gpt2Pattern).Select(m => m.Value));
        }
        Assert.Equal(expected.ToArray(), Words(text, PreTokenizerKind.SmolLm));
    }

    [Theory]
    [InlineData("Hello world 12345", new[] { "Hello", " world", " ", "123", "45" })]
    [InlineData("ÉCOLE", new[] { "É", "COLE" })] // É is "not a-z" and "not A-Z": the lower-case part backtracks to it
    [InlineData("HelloWorld's", new[] { "Hello", "World's" })]
    [InlineData("a/b\n\n", new[] { "a", "/b", "\n\n" })]
    [InlineData("x //\n\ny", new[] { "x", " //\n\n", "y" })]
    public void Gpt4oSplits(string text, string[] expected) => Assert.Equal(expected, Words(text, PreTokenizerKind.Gpt4o));

    [Fact]
    public void LongAlternatingCaseRunsSplitInLinearTime()
    {
        // Every word of "aBaB..." is two letters; a scanner that re-reads the rest of the run per word is quadratic.
        string text = string.Concat(Enumerable.Repeat("aB", 200_000));
        var words = BpePreTokenizer.Split(text, PreTokenizerKind.Gpt4o);
        Assert.Equal(200_001, words.Count); // "a", then "Ba" x 199999, then "B"
        Assert.Equal((0, 1), words[0]);
        Assert.Equal((text.Length - 1, 1), words[^1]);
    }
}
