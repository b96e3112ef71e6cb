using EdgeLlm.AI;

namespace EdgeLlm.Tests.Library;

public sealed class StopTextFilterTests
{
    private static (string Text, bool Stopped) Feed(string[] stops, params string[] pieces)
    {
        var sb = new System.Text.StringBuilder();
        var f = new StopTextFilter(stops, s => sb.Append(s));
        foreach (string p in pieces) if (!f.Push(p)) break;
        f.Flush();
        return (sb.ToString(), f.Stopped);
    }

    [Fact]
    public void CutsAtAStopSplitOverPieces() => Assert.Equal(("Hello ", true), Feed(["END"], "Hel", "lo E", "N", "D more"));

    [Fact]
    public void ReleasesHeldBackTextThatWasNotAStop() => Assert.Equal(("a EN b E", false), Feed(["END"], "a E", "N", " b E"));

    [Fact]
    public void TheEarliestOfSeveralStopsWins() => Assert.Equal(("x", true), Feed(["yz", "y"], "xyz"));

    [Fact]
    public void HoldsBackOnlyWhatCouldStartAStop()
    {
        var got = new List<string>();
        var f = new StopTextFilter(["\n\n"], got.Add);
        Assert.True(f.Push("one\n"));
        Assert.Equal(["one"], got);
        Assert.True(f.Push("two"));
        Assert.Equal(["one", "\ntwo"], got);
    }
}
