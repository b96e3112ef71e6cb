using EdgeLlm.CommandLine;

namespace EdgeLlm.Tests.CommandLine;

/// <summary>The parser the three tools share: names, values, positionals, suggestions and the help table.</summary>
public class CliArgsTests
{
    private static readonly OptionSpec[] Specs =
    [
        new(["-n", "--n-predict"], true, "N", "tokens"),
        new(["--temp"], true, "T", "temperature"),
        new(["--seed"], true, "S", "seed"),
        new(["-q", "--quiet"], "no progress"),
    ];

    private static CliArgs Parse(params string[] args) => new("tool sub", args, Specs);

    private static string Usage(params string[] args) => Assert.Throws<UsageException>(() => Parse(args)).Message;

    // ---- did you mean (moved here with CliArgs from the CLI) ----

    [Theory]
    [InlineData("kitten", "sitting", 3)]
    [InlineData("run", "run", 0)]
    [InlineData("rnu", "run", 1)]          // a swap of neighbours is one edit
    [InlineData("", "abc", 3)]
    [InlineData("--tmep", "--temp", 1)]
    [InlineData("--top_k", "--top-k", 1)]
    [InlineData("ca", "abc", 3)]           // optimal string alignment: no edit of a swapped pair (Damerau would say 2)
    public void EditDistanceCountsInsertionsDeletionsSubstitutionsAndSwaps(string a, string b, int expected)
    {
        Assert.Equal(expected, CliArgs.EditDistance(a, b));
        Assert.Equal(expected, CliArgs.EditDistance(b, a));
    }

    [Fact]
    public void DidYouMeanNamesTheClosestAndOnlyWhenClose()
    {
        string[] commands = ["run", "chat", "serve", "tokenize", "logits", "perplexity", "bench", "info", "devices", "doctor"];
        Assert.Equal("; did you mean 'chat'?", CliArgs.DidYouMean("caht", commands));
        Assert.Equal("; did you mean 'perplexity'?", CliArgs.DidYouMean("perplexty", commands));
        Assert.Equal("; did you mean 'doctor'?", CliArgs.DidYouMean("docter", commands));
        Assert.Equal("", CliArgs.DidYouMean("frobnicate", commands));
        Assert.Equal("", CliArgs.DidYouMean("xyz", commands));
    }

    // ---- parsing ----

    [Fact]
    public void EveryNameOfAnOptionReachesTheSameValue()
    {
        var a = Parse("--n-predict", "7", "-q");
        Assert.Equal(7, a.GetInt("-n", 0));
        Assert.Equal("7", a.GetString("--n-predict"));
        Assert.True(a.Has("--quiet"));
        Assert.False(a.Has("--temp"));
        Assert.Equal(0.5f, a.GetFloat("--temp", 0.5f));
        Assert.Empty(a.Positionals);
    }

    [Fact]
    public void LongOptionsTakeInlineValuesAndTheLastOneWins()
    {
        var a = Parse("--temp=0.25", "-n", "3", "--n-predict=9");
        Assert.Equal(0.25f, a.GetFloat("--temp", 1f));
        Assert.Equal(9, a.GetInt("-n", 0));
    }

    [Fact]
    public void NegativeNumbersAndALoneDashArePositionals()
    {
        var a = Parse("-1", "x", "-", "-2.5e3", "-n", "-4");
        Assert.Equal(["-1", "x", "-", "-2.5e3"], a.Positionals);
        Assert.Equal(-4, a.GetInt("-n", 0));
        Assert.Equal("unexpected argument '-1' for 'tool sub'", Assert.Throws<UsageException>(a.NoPositionals).Message);
    }

    [Fact]
    public void MistakesNameTheOptionAndTheProgram()
    {
        Assert.Equal("unknown option '--tmep' for 'tool sub'; did you mean '--temp'?", Usage("--tmep", "1"));
        Assert.Equal("unknown option '--bogus' for 'tool sub'", Usage("--bogus"));
        Assert.Equal("unknown option '--bogus' for 'tool sub'", Usage("--bogus=1"));
        Assert.Equal("option '--temp' needs a value (T)", Usage("-q", "--temp"));
        Assert.Equal("option '--quiet' takes no value", Usage("--quiet=yes"));
        Assert.Equal("option '-n' expects an integer, got 'ten'", Assert.Throws<UsageException>(() => Parse("-n", "ten").GetInt("-n", 0)).Message);
        Assert.Equal("option '-n' must be between 1 and 5, got 6", Assert.Throws<UsageException>(() => Parse("-n", "6").GetInt("-n", 0, 1, 5)).Message);
        Assert.Equal("option '--temp' expects a number, got 'NaN'", Assert.Throws<UsageException>(() => Parse("--temp", "NaN").GetFloat("--temp", 0)).Message);
    }

    [Theory]
    [InlineData("18446744073709551615", 18446744073709551615UL)]
    [InlineData("0", 0UL)]
    public void UnsignedValuesTakeTheWholeRange(string text, ulong expected) => Assert.Equal(expected, Parse("--seed", text).GetULong("--seed", 1));

    [Theory]
    [InlineData("-1")]
    [InlineData("+5")]
    [InlineData(" 5")]
    [InlineData("18446744073709551616")]
    public void UnsignedValuesRefuseSignsSpacesAndOverflow(string text)
    {
        var e = Assert.Throws<UsageException>(() => Parse("--seed", text).GetULong("--seed", 1));
        Assert.Equal($"option '--seed' expects an unsigned integer, got '{text}'", e.Message);
    }

    [Fact]
    public void AnUndeclaredNameIsAProgrammingError()
        => Assert.Throws<InvalidOperationException>(() => Parse().GetString("--top-k"));

    [Fact]
    public void HelpAndVerboseAreSeenAnywhereBeforeParsing()
    {
        Assert.True(CliArgs.AsksForHelp(["--bogus", "x", "-h"]));
        Assert.True(CliArgs.AsksForHelp(["--help"]));
        Assert.False(CliArgs.AsksForHelp(["--helpful", "-hh"]));
        Assert.True(CliArgs.AsksForVerbose(["x", "--verbose"]));
        Assert.False(CliArgs.AsksForVerbose(["-vv"]));
    }

    [Fact]
    public void UsageLinePointsAtTheProgramsHelp()
        => Assert.Equal("edgellm-convert: missing -o OUTPUT.gguf (see 'edgellm-convert --help')", new UsageException("missing -o OUTPUT.gguf").Line("edgellm-convert"));

    // ---- help table ----

    [Fact]
    public void HelpTablePadsNamesAndIndentsFurtherLines()
    {
        OptionSpec[] specs =
        [
            new(["-o", "--output"], true, "FILE", "where"),
            new(["--type"], true, "T", "one\ntwo"),
            new(["-h", "--help"], "hidden") { Listed = false },
            new(["--a"], true, "N", "grouped") { Synopsis = "--a --b N" },
            new(["--a-very-long-option-name"], "long"),
        ];
        // help at column 2 + 16 + 1 = 19; a synopsis longer than 16 is followed by one space
        string expected =
            "  -o, --output FILE where\n" +
            "  --type T         one\n" +
            "                   two\n" +
            "  --a --b N        grouped\n" +
            "  --a-very-long-option-name long\n";
        Assert.Equal(expected, OptionTable.Format(specs, 16));
    }
}
