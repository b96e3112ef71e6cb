namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// The server's step log (EDGELLM_STEP_LOG) written through an OutputFile: complete or not at all, and a failure is one
/// line naming the file. Before: it was written in place (a full disk left a truncated CSV that reads as a shorter
/// run) and through a directory-less or special path with the raw .NET message.
/// </summary>
public class StepLogWriteTests
{
    [Fact]
    public void A_complete_log_has_its_header_and_no_partial_file()
    {
        string path = TestPaths.TempFile("steps-ok.csv");
        var log = new EdgeLlm.Cli.Server.StepLog(path);
        Assert.Null(log.TryWrite());
        Assert.Equal(["start_ms,idle_before_ms,gather_ms,decode,prefill_seqs,prefill_tokens,forward_ms,host_ms,busy_slots"], File.ReadAllLines(path));
        Assert.False(File.Exists(path + ".partial"));
    }

    [Fact]
    public void A_missing_folder_is_one_line_and_no_file()
    {
        string path = Path.Combine(TestPaths.TempFile("no-such-folder"), "steps.csv");
        string? error = new EdgeLlm.Cli.Server.StepLog(path).TryWrite();
        Assert.NotNull(error);
        Assert.StartsWith($"edgellm serve: cannot write the step log {path}: ", error);
        Assert.EndsWith("; not written", error);
        Assert.DoesNotContain('\n', error);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void A_device_node_is_refused_not_written_through()
    {
        string? error = new EdgeLlm.Cli.Server.StepLog("/dev/full").TryWrite();
        Assert.NotNull(error);
        Assert.StartsWith("edgellm serve: cannot write the step log /dev/full: /dev/full: refusing to write the output there", error);
        Assert.DoesNotContain('\n', error);
    }
}
