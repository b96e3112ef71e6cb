using System.Diagnostics;
using System.Globalization;
using EdgeLlm.IO;

namespace EdgeLlm.Cli.Server;

/// <summary>
/// A diagnostic record of the scheduler's steps, on when <c>EDGELLM_STEP_LOG</c> names a file: one row per forward
/// call (when it started, how long the scheduler had waited idle before it, how long it waited to gather prompts, the
/// decoding slots, the prompt chunks and their tokens, the forward call's time, the host time around it, the slots held), kept in a preallocated array
/// (nothing allocated per step) and written as CSV when the engine stops. At most <see cref="Capacity"/> steps are
/// kept (the first ones).
/// </summary>
internal sealed class StepLog(string path)
{
    public const int Capacity = 1 << 17;

    private readonly Row[] _rows = new Row[Capacity];
    private readonly long _origin = Stopwatch.GetTimestamp();
    private int _count;

    private readonly record struct Row(long Start, long IdleBefore, long Gather, InferenceEngine.StepCounts Counts, long Host, int Busy);

    public string Path { get; } = path;

    /// <summary>The log <c>EDGELLM_STEP_LOG</c> asks for, or null.</summary>
    public static StepLog? FromEnvironment() =>
        Environment.GetEnvironmentVariable("EDGELLM_STEP_LOG") is { Length: > 0 } p ? new StepLog(p) : null;

    /// <summary>Records one step (the scheduler thread only).</summary>
    public void Add(long start, long idleBefore, long gather, InferenceEngine.StepCounts counts, long host, int busy)
    {
        if (_count < _rows.Length) _rows[_count++] = new Row(start, idleBefore, gather, counts, host, busy);
    }

    /// <summary>
    /// Writes the rows as CSV (times in milliseconds) through an <see cref="OutputFile"/>: complete or not at all (a full
    /// disk or the file-size limit leaves no truncated log that reads as a shorter run). A failure is one line on
    /// stderr, not thrown: the server is stopping anyway.
    /// </summary>
    public void Write()
    {
        if (TryWrite() is { } error) StandardStreams.TryWriteError(error);
    }

    /// <summary>Writes the log; null when written, else the one-line reason (for the caller to print).</summary>
    internal string? TryWrite()
    {
        try
        {
            using var output = OutputFile.Create(Path);
            using (var w = new StreamWriter(output.Stream, new System.Text.UTF8Encoding(false), 1 << 16, leaveOpen: true))
            {
                w.WriteLine("start_ms,idle_before_ms,gather_ms,decode,prefill_seqs,prefill_tokens,forward_ms,host_ms,busy_slots");
                var inv = CultureInfo.InvariantCulture;
                double ms = 1000.0 / Stopwatch.Frequency;
                for (int i = 0; i < _count; i++)
                {
                    var r = _rows[i];
                    w.WriteLine(string.Create(inv, $"{(r.Start - _origin) * ms:F3},{r.IdleBefore * ms:F3},{r.Gather * ms:F3},{r.Counts.Decode},{r.Counts.PrefillSeqs},{r.Counts.PrefillTokens},{r.Counts.ForwardTicks * ms:F3},{r.Host * ms:F3},{r.Busy}"));
                }
            }
            output.Commit();
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or EdgeLlmException || FileSizeLimit.IsExceeded(e))
        {
            string why = e is OutputWriteException w ? w.Reason : FileSizeLimit.IsExceeded(e) ? FileSizeLimit.Reason : ErrorText.OneLine(e);
            return $"edgellm serve: cannot write the step log {Path}: {why}; not written";
        }
    }
}
