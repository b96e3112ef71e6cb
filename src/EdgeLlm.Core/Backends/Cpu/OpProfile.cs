using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace EdgeLlm.Backends.Cpu;

/// <summary>The operations <see cref="OpProfile"/> times (matmuls by the weight they multiply).</summary>
internal enum ProfiledOp
{
    GetRows, RmsNorm, AddRmsNorm, Quantize, MatQkv, MatWo, MatGateUp, MatDown, MatOutput, MatOther,
    Rope, StoreKv, Attention, AddBias, Add, Glu, Scale, Softcap, Copy, Gap,
}

/// <summary>
/// Per-op wall time of a <see cref="CpuBackend"/> and per-thread busy/wake/idle time of its <see cref="WorkerPool"/>, when
/// <c>EDGELLM_OP_PROFILE=1</c> (a backend made without it has none, and each op pays one null test). Printed to stderr
/// when the backend is disposed. "Gap" is the time between two ops of a step (the model's own code between backend
/// calls); the time after a copy out of the logits up to the next step's embedding lookup is the caller's, not counted.
/// Worker times: wake = publish to the worker starting its share, busy = its share, idle = the rest of the dispatch
/// (waiting for the slowest thread); the caller's wait is its spin at the barrier after its own share. Outside
/// dispatches (serial ops on the caller) every worker idles.
/// </summary>
internal sealed class OpProfile
{
    /// <summary>True when <c>EDGELLM_OP_PROFILE=1</c> (read once per process).</summary>
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("EDGELLM_OP_PROFILE") == "1";

    private const int Ops = (int)ProfiledOp.Gap + 1;
    private readonly long[] _ticks = new long[Ops];
    private readonly long[] _calls = new long[Ops];
    private readonly long[] _dispatches = new long[Ops];
    private readonly long[] _min = NewMins();

    private static long[] NewMins()
    {
        var m = new long[Ops];
        Array.Fill(m, long.MaxValue);
        return m;
    }

    private void Count(int op, long ticks)
    {
        _ticks[op] += ticks;
        _calls[op]++;
        if (ticks < _min[op]) _min[op] = ticks;
    }
    private long _lastEnd; // 0: outside a step
    private ProfiledOp _current = ProfiledOp.Gap;

    // Per thread, padded (16 longs apart) so workers do not share lines: busy, wake (workers), wait (caller).
    private const int Stride = 16;
    private readonly long[] _threadTicks;
    private readonly int _threads;
    private long _dispatchWall, _dispatchCount;

    public OpProfile(int threads)
    {
        _threads = threads;
        _threadTicks = new long[(threads + 1) * Stride];
    }

    /// <summary>The start of an op (also closes the gap since the previous op of the step).</summary>
    public long Begin(ProfiledOp op)
    {
        long now = Stopwatch.GetTimestamp();
        if (_lastEnd != 0)
        {
            Count((int)ProfiledOp.Gap, now - _lastEnd);
        }
        _current = op;
        return now;
    }

    /// <summary>The end of an op begun at <paramref name="start"/>; <paramref name="endsStep"/> after the logits leave.</summary>
    public void End(ProfiledOp op, long start, bool endsStep = false)
    {
        long now = Stopwatch.GetTimestamp();
        Count((int)op, now - start);
        _lastEnd = endsStep ? 0 : now;
        _current = ProfiledOp.Gap;
    }

    /// <summary>Moves <paramref name="ticks"/> of the current op to <paramref name="part"/> (a matmul's serial activation quantize).</summary>
    public void Split(ProfiledOp part, long ticks)
    {
        Count((int)part, ticks);
        _ticks[(int)_current] -= ticks;
    }

    // WorkerPool hooks (the pool's caller is thread 0).
    public void Dispatched(long wall, long callerBusy, long callerWait)
    {
        _dispatchWall += wall;
        _dispatchCount++;
        _dispatches[(int)_current]++;
        _threadTicks[0 * Stride] += callerBusy;
        _threadTicks[0 * Stride + 2] += callerWait;
    }

    public void Worker(int thread, long wake, long busy)
    {
        _threadTicks[thread * Stride] += busy;
        _threadTicks[thread * Stride + 1] += wake;
    }

    public string Report()
    {
        var inv = CultureInfo.InvariantCulture;
        double f = 1e6 / Stopwatch.Frequency; // ticks to microseconds
        long steps = Math.Max(1, _calls[(int)ProfiledOp.MatOutput]);
        long total = 0;
        foreach (long t in _ticks) total += t;
        var sb = new StringBuilder();
        sb.AppendLine(string.Format(inv, "op profile ({0} threads, {1} output products = steps; us per step, % of the backend's time)", _threads, steps));
        sb.AppendLine("  op            calls/step  dispatches/step  us/step      %  min us/call  calls x min us/step");
        double floor = 0;
        for (int i = 0; i < Ops; i++)
        {
            if (_calls[i] == 0) continue;
            double minUs = _min[i] * f, floorUs = minUs * _calls[i] / steps;
            floor += floorUs;
            sb.AppendLine(string.Format(inv, "  {0,-12} {1,11:F1} {2,16:F1} {3,8:F1} {4,6:F1} {5,12:F2} {6,20:F1}",
                (ProfiledOp)i, (double)_calls[i] / steps, (double)_dispatches[i] / steps, _ticks[i] * f / steps, 100.0 * _ticks[i] / Math.Max(1, total), minUs, floorUs));
        }
        sb.AppendLine(string.Format(inv, "  total        {0,28:F1} {1,8:F1} {2,34:F1}", (double)_dispatchCount / steps, total * f / steps, floor));
        sb.AppendLine(string.Format(inv, "  dispatch wall {0:F1} us/step; serial (outside dispatches) {1:F1} us/step", _dispatchWall * f / steps, (total - _dispatchWall) * f / steps));
        sb.AppendLine(string.Format(inv, "  thread 0: busy {0:F1} us/step, barrier wait {1:F1} us/step",
            _threadTicks[0] * f / steps, _threadTicks[2] * f / steps));
        for (int t = 1; t < _threads; t++)
        {
            long busy = _threadTicks[t * Stride], wake = _threadTicks[t * Stride + 1];
            sb.AppendLine(string.Format(inv, "  thread {0}: busy {1:F1} us/step, wake {2:F1} us/step, idle in dispatch {3:F1} us/step, idle outside {4:F1} us/step",
                t, busy * f / steps, wake * f / steps, (_dispatchWall - busy - wake) * f / steps, (total - _dispatchWall) * f / steps));
        }
        return sb.ToString();
    }
}
