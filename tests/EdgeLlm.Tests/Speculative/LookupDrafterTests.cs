using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Speculative;

public class LookupDrafterTests
{
    private static int[] Propose(LookupDrafter d, int[] history, int max)
    {
        var drafts = new int[max];
        int n = d.Propose(history, max, drafts, default);
        return drafts[..n];
    }

    [Fact]
    public void LongestSuffixMatchWins()
    {
        // Suffix 7 8 9: the 3-gram "7 8 9" occurs at 4 (followed by 1 2), while "9" alone occurs later at 10 (followed by 5).
        int[] h = [1, 2, 3, 0, 7, 8, 9, 1, 2, 6, 9, 5, 4, 7, 8, 9];
        Assert.Equal([1, 2, 6], Propose(new LookupDrafter(3), h, 3));
    }

    [Fact]
    public void MostRecentOccurrenceWins_AndContinuationStopsAtTheEnd()
    {
        // "5 6" at 0 (followed by 1 1 1) and at 5 (followed by 2 5 6): the later one; only 3 tokens follow it.
        int[] h = [5, 6, 1, 1, 1, 5, 6, 2, 5, 6];
        Assert.Equal([2, 5, 6], Propose(new LookupDrafter(8), h, 8));
        Assert.Equal([2], Propose(new LookupDrafter(8), h, 1)); // the caller's cap
        Assert.Equal([2, 5], Propose(new LookupDrafter(2), h, 8)); // the drafter's own cap
    }

    [Fact]
    public void NoMatch_ProposesNothing()
    {
        Assert.Empty(Propose(new LookupDrafter(4), [1, 2, 3, 4], 4));
        Assert.Empty(Propose(new LookupDrafter(4), [1], 4));
        // With n-grams of at least 2 a lone repeated token is not enough.
        Assert.Empty(Propose(new LookupDrafter(4, maxNgram: 3, minNgram: 2), [1, 9, 2, 9], 4));
        Assert.Equal([2, 9], Propose(new LookupDrafter(4, maxNgram: 3, minNgram: 1), [1, 9, 2, 9], 4));
    }
}
