using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Backends.Cuda;

// EDGELLM_CUDA_PROFILE=1: a CUDA event before and after every launch (and device copy), read back at the end of each
// step into the per-kernel table (CudaProfile). Graphs are off in this mode (CudaSettings), so each launch is its own.
public sealed unsafe partial class CudaBackend
{
    private CudaProfile? _profile;
    private readonly List<(string Name, nint Start, nint Stop)> _timed = new();
    private readonly Stack<nint> _freeEvents = new();

    /// <summary>The per-kernel times so far (EDGELLM_CUDA_PROFILE=1), or null when not profiling.</summary>
    public CudaProfile? Profile
    {
        get
        {
            if (_profile is not null && !_disposed) CollectProfile();
            return _profile;
        }
    }

    /// <summary>Records the start event of a timed launch; 0 when not profiling.</summary>
    private nint ProfileBegin()
    {
        if (_profile is null) return 0;
        nint start = TimingEvent();
        CudaDriver.Check(CudaDriver.cuEventRecord(start, _stream), "cuEventRecord");
        return start;
    }

    /// <summary>Records the stop event of the launch <paramref name="start"/> began (nothing when it is 0).</summary>
    private void ProfileEnd(string name, nint start)
    {
        if (start == 0) return;
        nint stop = TimingEvent();
        CudaDriver.Check(CudaDriver.cuEventRecord(stop, _stream), "cuEventRecord");
        _timed.Add((name, start, stop));
    }

    private nint TimingEvent()
    {
        if (_freeEvents.TryPop(out nint e)) return e;
        CudaDriver.Check(CudaDriver.cuEventCreate(out e, 0 /* timing enabled */), "cuEventCreate");
        return e;
    }

    /// <summary>Waits for the timed launches and adds their times to the table.</summary>
    private void CollectProfile()
    {
        if (_timed.Count == 0) return;
        EnsureContext();
        CudaDriver.Check(CudaDriver.cuEventSynchronize(_timed[^1].Stop), "cuEventSynchronize");
        foreach (var (name, start, stop) in _timed)
        {
            CudaDriver.Check(CudaDriver.cuEventElapsedTime(out float ms, start, stop), "cuEventElapsedTime");
            _profile!.Add(name, ms);
            _freeEvents.Push(start);
            _freeEvents.Push(stop);
        }
        _timed.Clear();
    }

    /// <summary>Destroys the timing events (errors ignored: teardown).</summary>
    private void DestroyProfileEvents()
    {
        foreach (var (_, start, stop) in _timed)
        {
            CudaDriver.cuEventDestroy(start);
            CudaDriver.cuEventDestroy(stop);
        }
        _timed.Clear();
        while (_freeEvents.TryPop(out nint e)) CudaDriver.cuEventDestroy(e);
    }
}
