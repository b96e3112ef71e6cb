namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// One parallel operation. The pool calls <see cref="Execute"/> once on every thread; each thread does
/// its own fixed share (see <see cref="WorkerPool.Range"/>). Ops keep one preallocated instance and set
/// its fields before each run, so dispatching allocates nothing.
/// </summary>
internal abstract class ParallelWork
{
    public abstract void Execute(int thread, int threadCount);
}

/// <summary>
/// A fixed set of worker threads started once. <see cref="Run"/> publishes a work item, runs thread 0's
/// share on the calling thread and waits for the rest. Waiting is a cheap barrier: spin on a volatile
/// counter for a while (ops follow each other within microseconds during a forward pass), yielding now
/// and then in case the machine is oversubscribed, then block on a monitor (so an idle model costs no CPU). No tasks, no allocation per dispatch.
/// The monitor is only touched when someone sleeps: a publish or a last completion is one interlocked
/// operation followed by a read of the sleeper count (a Dekker-style handshake: the sleeper registers itself
/// with a full fence before its final check, the waker checks for sleepers after a full fence, so at least one
/// of them sees the other), which keeps the per-op cost of a forward pass to a few cache-line transfers.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    /// <summary>Spin iterations before blocking: a few hundred microseconds on current CPUs.</summary>
    private const int SpinIterations = 1 << 13;

    private readonly Thread[] _threads;
    private readonly object _lock = new();
    private ParallelWork? _work;
    private int _generation;
    private int _remaining;
    private int _sleepingWorkers;
    private int _callerSleeping;
    private bool _stop;
    private Exception? _error;

    /// <summary>Per-thread busy/wake/wait times (<see cref="OpProfile"/>, only with <c>EDGELLM_OP_PROFILE=1</c>; else null).</summary>
    internal OpProfile? Profile;
    private long _publishTicks;

    public int ThreadCount { get; }

    /// <summary>How many worker threads are pinned to a CPU of their own (0 when pinning is off or not possible).</summary>
    public int PinnedWorkers => Volatile.Read(ref _pinned);

    private readonly int[] _cpus;
    private int _pinned;

    public WorkerPool(int threadCount)
    {
        if (threadCount < 1) throw new ArgumentOutOfRangeException(nameof(threadCount), $"thread count {threadCount} must be at least 1");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        // Workers take CPUs 1..n-1 of the allowed set; the caller stays unpinned (threads it creates later inherit its
        // mask), and the scheduler keeps it on the CPU the pinned workers leave free.
        int[] allowed = threadCount > 1 && CpuAffinity.Enabled() ? CpuAffinity.AllowedCpus() : [];
        _cpus = allowed.Length >= threadCount ? allowed : [];
        for (int i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"edgellm-cpu-{i + 1}" };
            _threads[i].Start(i + 1);
        }
    }

    /// <summary>The share [start, end) of n items that <paramref name="thread"/> of <paramref name="threadCount"/> owns.</summary>
    public static (long Start, long End) Range(long n, int thread, int threadCount) =>
        (n * thread / threadCount, n * (thread + 1) / threadCount);

    /// <summary>
    /// Element-wise ops over at most this many floats run on the calling thread alone: a decode step's norms,
    /// residual adds and rotations take well under a microsecond, less than waking the workers and waiting for
    /// them would, and the workers keep spinning for the next matmul meanwhile.
    /// </summary>
    public const long SerialElements = 4096;

    /// <summary>
    /// Runs <paramref name="work"/> over <paramref name="elements"/> items: on the caller alone when the op is small
    /// (<see cref="SerialElements"/>), else as <see cref="Run(ParallelWork)"/>. Ops whose per-element result does not
    /// depend on the split are the only ones to use this.
    /// </summary>
    public void Run(ParallelWork work, long elements)
    {
        if (elements <= SerialElements) work.Execute(0, 1);
        else Run(work);
    }

    /// <summary>How many times <see cref="Run(ParallelWork)"/> was called (one dispatch and barrier each; tests count them).</summary>
    public long Dispatches { get; private set; }

    /// <summary>Runs <paramref name="work"/> on every thread and returns when all are done. Not reentrant.</summary>
    public void Run(ParallelWork work)
    {
        Dispatches++;
        if (ThreadCount == 1)
        {
            work.Execute(0, 1);
            return;
        }
        var prof = Profile;
        long p0 = prof is not null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        _publishTicks = p0;
        _work = work;
        _error = null;
        Volatile.Write(ref _remaining, ThreadCount - 1);
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _sleepingWorkers) != 0)
        {
            lock (_lock) Monitor.PulseAll(_lock);
        }

        Exception? mine = null;
        try { work.Execute(0, ThreadCount); }
        catch (Exception e) { mine = e; }
        long p1 = prof is not null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;

        for (int spins = 0; Volatile.Read(ref _remaining) != 0; spins++)
        {
            if (spins < SpinIterations) { Spin(spins); continue; }
            lock (_lock)
            {
                Interlocked.Exchange(ref _callerSleeping, 1);
                while (Volatile.Read(ref _remaining) != 0) Monitor.Wait(_lock);
                Volatile.Write(ref _callerSleeping, 0);
            }
        }
        if (prof is not null)
        {
            long p2 = System.Diagnostics.Stopwatch.GetTimestamp();
            prof.Dispatched(p2 - p0, p1 - p0, p2 - p1);
        }
        _work = null;
        var error = mine ?? _error;
        if (error is not null) throw new AggregateException("a CPU worker failed: " + error.Message, error);
    }

    /// <summary>Pause briefly; every 64th spin yield the core, so an oversubscribed machine still makes progress.</summary>
    internal static void Spin(int spins)
    {
        if ((spins & 63) == 63) Thread.Yield();
        else Thread.SpinWait(4);
    }

    private void WorkerLoop(object? arg)
    {
        int index = (int)arg!;
        if (_cpus.Length > index && CpuAffinity.PinCurrentThread(_cpus[index])) Interlocked.Increment(ref _pinned);
        int seen = 0;
        while (true)
        {
            int gen;
            for (int spins = 0; (gen = Volatile.Read(ref _generation)) == seen; spins++)
            {
                if (spins < SpinIterations) { Spin(spins); continue; }
                lock (_lock)
                {
                    Interlocked.Increment(ref _sleepingWorkers);
                    while (Volatile.Read(ref _generation) == seen) Monitor.Wait(_lock);
                    Interlocked.Decrement(ref _sleepingWorkers);
                }
            }
            seen = gen;
            if (Volatile.Read(ref _stop)) return;
            var prof = Profile;
            long s0 = prof is not null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
            try { _work!.Execute(index, ThreadCount); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            if (prof is not null) prof.Worker(index, s0 - _publishTicks, System.Diagnostics.Stopwatch.GetTimestamp() - s0);
            if (Interlocked.Decrement(ref _remaining) == 0 && Volatile.Read(ref _callerSleeping) != 0)
            {
                lock (_lock) Monitor.PulseAll(_lock);
            }
        }
    }

    public void Dispose()
    {
        if (_stop) return;
        lock (_lock)
        {
            Volatile.Write(ref _stop, true);
            Interlocked.Increment(ref _generation);
            Monitor.PulseAll(_lock);
        }
        foreach (var t in _threads) t.Join();
    }
}
