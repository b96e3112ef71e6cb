using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Backends.Cuda;

// The flush of a recorded step: upload the step buffer (first position, token ids), then replay a captured CUDA
// graph whose ops match, capture a new one (decode steps), or launch op by op.
public sealed unsafe partial class CudaBackend
{
    private const int MaxGraphs = 4;

    public bool GraphsEnabled { get; private set; }

    /// <summary>Steps captured into a new graph / steps replayed from one / steps launched op by op.</summary>
    public int GraphCaptures { get; private set; }
    public int GraphReplays { get; private set; }
    public int EagerSteps { get; private set; }

    private nint _stepUploaded;       // event after the last step upload (the staging may be reused after it)
    private bool _stepUploadPending;

    private readonly Graph?[] _graphs = new Graph?[MaxGraphs];
    private long _graphClock;

    private sealed class Graph(CudaOp[] ops, nint graph, nint exec)
    {
        public readonly CudaOp[] Ops = ops;
        public readonly nint Handle = graph;
        public readonly nint Exec = exec;
        public long LastUse;
    }

    /// <summary>Launches the recorded step (as a graph when it can) and clears the record. Does not wait.</summary>
    private void Flush()
    {
        if (_opCount == 0) return;
        EnsureContext();
        if (_uploadStaging != null) FreeUploadStaging(); // the weights are loaded: the async uploads ran on _stream, before this step
        if (_needContextSync)
        {
            CudaDriver.Check(CudaDriver.cuCtxSynchronize(), "cuCtxSynchronize");
            _needContextSync = false;
        }
        int basePos = 0;
        bool found = false;
        for (int i = 0; i < _opCount; i++)
        {
            ref var op = ref _ops[i];
            if (op.Kind is not (CudaOpKind.Rope or CudaOpKind.StoreKv or CudaOpKind.Attention or CudaOpKind.AttentionSplit)) continue;
            if (!found) { basePos = op.StartPos; found = true; }
            op.PosDelta = op.StartPos - basePos;
        }
        WaitStepUpload();
        _hostStep[0] = basePos;
        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(_step, _hostStep, (nuint)((1 + _stepIds) * sizeof(int)), _stream), "cuMemcpyHtoDAsync_v2");
        CudaDriver.Check(CudaDriver.cuEventRecord(_stepUploaded, _stream), "cuEventRecord");
        _stepUploadPending = true;
        try
        {
            bool decodeStep = GraphsEnabled && _ops[0].Kind == CudaOpKind.GetRows && _ops[0].Tokens == 1;
            if (decodeStep && TryReplay()) GraphReplays++;
            else if (decodeStep && TryCapture()) GraphCaptures++;
            else
            {
                ExecuteAll();
                EagerSteps++;
            }
        }
        finally
        {
            _opCount = 0;
            _stepIds = 0;
        }
        if (_profile is not null) CollectProfile();
    }

    /// <summary>Waits until the last step upload has left the pinned staging buffer (so it may be rewritten).</summary>
    private void WaitStepUpload()
    {
        if (!_stepUploadPending) return;
        CudaDriver.Check(CudaDriver.cuEventSynchronize(_stepUploaded), "cuEventSynchronize");
        _stepUploadPending = false;
    }

    private bool TryReplay()
    {
        for (int g = 0; g < _graphs.Length; g++)
        {
            var graph = _graphs[g];
            if (graph is null || graph.Ops.Length != _opCount) continue;
            bool same = true;
            for (int i = 0; i < _opCount && same; i++) same = graph.Ops[i].SameLaunch(in _ops[i]);
            if (!same) continue;
            graph.LastUse = ++_graphClock;
            CudaDriver.Check(CudaDriver.cuGraphLaunch(graph.Exec, _stream), "cuGraphLaunch");
            return true;
        }
        return false;
    }

    /// <summary>Captures the step into a new graph and launches it; false (graphs switched off) if capture is refused.</summary>
    private bool TryCapture()
    {
        int rc = CudaDriver.cuStreamBeginCapture(_stream, CudaDriver.StreamCaptureModeThreadLocal);
        if (rc != CudaDriver.Success)
        {
            GraphsEnabled = false;
            return false;
        }
        nint graph;
        try
        {
            ExecuteAll();
        }
        catch (CudaException)
        {
            // A launch the capture refused: end it, switch graphs off, and let the caller launch op by op
            // (which reports the error again if it was not about capturing).
            if (CudaDriver.cuStreamEndCapture(_stream, out graph) == CudaDriver.Success && graph != 0) CudaDriver.cuGraphDestroy(graph);
            GraphsEnabled = false;
            return false;
        }
        rc = CudaDriver.cuStreamEndCapture(_stream, out graph);
        if (rc != CudaDriver.Success || graph == 0)
        {
            GraphsEnabled = false;
            return false;
        }
        rc = CudaDriver.cuGraphInstantiateWithFlags(out nint exec, graph, 0);
        if (rc != CudaDriver.Success)
        {
            CudaDriver.cuGraphDestroy(graph);
            GraphsEnabled = false;
            return false;
        }
        int slot = 0;
        for (int g = 0; g < _graphs.Length; g++)
        {
            if (_graphs[g] is null) { slot = g; break; }
            if (_graphs[g]!.LastUse < _graphs[slot]!.LastUse) slot = g;
        }
        if (_graphs[slot] is { } old)
        {
            CudaDriver.cuGraphExecDestroy(old.Exec);
            CudaDriver.cuGraphDestroy(old.Handle);
        }
        _graphs[slot] = new Graph(_ops.AsSpan(0, _opCount).ToArray(), graph, exec) { LastUse = ++_graphClock };
        CudaDriver.Check(CudaDriver.cuGraphLaunch(exec, _stream), "cuGraphLaunch");
        return true;
    }

    /// <summary>Destroys every captured graph (errors ignored: this runs on teardown paths too).</summary>
    private void DestroyGraphs()
    {
        for (int g = 0; g < _graphs.Length; g++)
        {
            if (_graphs[g] is not { } old) continue;
            CudaDriver.cuGraphExecDestroy(old.Exec);
            CudaDriver.cuGraphDestroy(old.Handle);
            _graphs[g] = null;
        }
    }
}
