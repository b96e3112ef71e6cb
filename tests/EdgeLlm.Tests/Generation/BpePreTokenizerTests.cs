using System.Text.RegularExpressions;
using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Generation;

public class BpePreTokenizerTests
{
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    private const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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
    };

    [Theory]
    [MemberData(nameof(RegexCases))]
    public void ScannersAgreeWithTheRegexOnBmpText(string text)
    {
        string[] Regexed(string pattern) => Regex.Matches(text, pattern).Select(m => m.Value).ToArray();
        Assert.Equal(Regexed(Gpt2Pattern), Words(text, PreTokenizerKind.Gpt2));
        Assert.Equal(Regexed(Llama3Pattern), Words(text, PreTokenizerKind.Llama3));
    }
}
