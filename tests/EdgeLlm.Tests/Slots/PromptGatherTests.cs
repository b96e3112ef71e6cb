using EdgeLlm.Cli.Server;

namespace EdgeLlm.Tests.Slots;

/// <summary>
/// The bookkeeping behind a prompt-only step's wait for returning clients: which ended requests still expect a
/// next one. Times are plain numbers (the engine passes Stopwatch ticks).
/// </summary>
public class PromptGatherTests
{
    [Fact]
    public void A_lone_clients_next_request_expects_nobody()
    {
        var g = new PromptGather(4);
        g.Completed(100);
        g.Arrived();
        Assert.Equal(0, g.Expected(110, 50));
        Assert.Equal(0, g.Count);
    }

    [Fact]
    public void Requests_that_ended_together_expect_the_others_after_the_first_returns()
    {
        var g = new PromptGather(4);
        for (int i = 0; i < 4; i++) g.Completed(100 + i);
        g.Arrived();
        Assert.Equal(3, g.Expected(120, 50));
        g.Arrived();
        g.Arrived();
        Assert.Equal(1, g.Expected(120, 50));
        g.Arrived();
        Assert.Equal(0, g.Expected(120, 50));
        g.Arrived(); // more arrivals than completions: nothing to answer, nothing goes negative
        Assert.Equal(0, g.Count);
        g.Completed(200);
        Assert.Equal(1, g.Expected(200, 0));
    }

    [Fact]
    public void Completions_older_than_the_window_are_not_expected()
    {
        var g = new PromptGather(4);
        g.Completed(0);
        g.Completed(960);
        Assert.Equal(1, g.Expected(1000, 50));
        Assert.Equal(2, g.Expected(1000, 1000));
        Assert.Equal(0, g.Expected(1011, 50));
    }

    [Fact]
    public void An_arrival_answers_the_oldest_completion()
    {
        var g = new PromptGather(4);
        g.Completed(0);
        g.Completed(100);
        g.Arrived(); // answers the one at 0, so the one at 100 is still expected
        Assert.Equal(1, g.Expected(120, 50));
    }

    [Fact]
    public void When_full_the_oldest_completion_is_forgotten()
    {
        var g = new PromptGather(2);
        g.Completed(10);
        g.Completed(20);
        g.Completed(30);
        Assert.Equal(2, g.Count);
        Assert.Equal(2, g.Expected(30, 10)); // 20 and 30 kept, 10 dropped
        g.Arrived();
        Assert.Equal(1, g.Expected(30, 0)); // 30 is left
    }
}
