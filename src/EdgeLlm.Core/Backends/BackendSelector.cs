using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends;

/// <summary>The backend a model runs on, and one line saying which and why (for the log).</summary>
public sealed record BackendSelection(IBackend Backend, string Description, bool IsCuda, bool Warn);

/// <summary>
/// Turns <c>--device auto|cpu|cuda[:N]</c> into a backend. <c>auto</c> takes CUDA when every check passes (driver,
/// cuInit, device, compute capability, NVRTC, weight types, memory, kernel build) and otherwise the CPU, with the
/// first failed check as the reason; <see cref="Build"/> also falls back to the CPU when CUDA fails later, while the
/// model is built on it. An explicit <c>cuda</c> that fails throws <see cref="EdgeLlmException"/> with that reason, so
/// the CLI prints one line and exits 1.
/// </summary>
public static class BackendSelector
{
    /// <summary>As <see cref="Select(ResolvedOptions)"/> for options not yet resolved for <paramref name="file"/>.</summary>
    public static BackendSelection Select(BackendOptions options, GgufFile file) => Select(ResolvedOptions.Resolve(file, options));

    public static BackendSelection Select(ResolvedOptions resolved)
    {
        var options = resolved.Options;
        var file = resolved.File;
        var spec = resolved.Device;
        if (!Split.GpuLayersRequest.TryParse(options.GpuLayers, out var request))
            throw new EdgeLlmException($"--gpu-layers '{options.GpuLayers}' is not auto, all or a number of layers");
        string ignored = request.Auto ? "" : $"; --gpu-layers {request} ignored";
        if (spec.Kind == DeviceKind.Cpu) return Cpu(options, "device cpu (requested)" + ignored, warn: false);

        if (TryCuda(spec.Kind == DeviceKind.Cuda ? spec.Ordinal : 0, resolved, request, out var cuda, out var plan, out string why, out bool warn))
        {
            string placement = $"device cuda: {cuda!.Name}; weights {cuda.WeightPlacement}";
            if (plan is null || plan.AllOnGpu)
                return new BackendSelection(cuda, placement + (plan is null ? "" : $"; {plan.Reason}"), IsCuda: true, Warn: false);
            if (plan.NoneOnGpu)
            {
                cuda.Dispose();
                return Cpu(options, $"device cpu: {plan.Reason}", warn: false);
            }
            IBackend? cpu = null;
            try
            {
                cpu = new CpuBackend(options.Threads, options.BatchInvariant);
                bool tied = !file.Tensors.Any(t => t.Name == "output.weight");
                var split = new Split.SplitBackend(cpu, cuda, plan.CpuLayers, plan.LayerCount, tied);
                return new BackendSelection(split,
                    $"{placement}; layers 0-{plan.CpuLayers - 1} on the CPU, {plan.CpuLayers}-{plan.LayerCount - 1} and output on the GPU: {plan.Reason}",
                    IsCuda: true, Warn: false);
            }
            catch
            {
                cpu?.Dispose();
                cuda.Dispose();
                throw;
            }
        }
        if (spec.Kind == DeviceKind.Cuda) throw new EdgeLlmException($"--device {options.Device.Trim()}: {why}");
        return Cpu(options, $"device cpu: CUDA not used: {why}" + ignored, warn);
    }

    public static BackendSelection Cpu(BackendOptions options, string description, bool warn) =>
        new(new CpuBackend(options.Threads, options.BatchInvariant), description, IsCuda: false, Warn: warn);

    /// <summary>
    /// Selects the backend (<see cref="Select(ResolvedOptions)"/>) and hands it to <paramref name="build"/>, which owns it
    /// once it returns. If build throws, the backend is disposed and the exception passes on, except a
    /// <see cref="CudaException"/> under <c>--device auto</c>: then build runs once more on a CPU backend whose selection
    /// says why and warns.
    /// </summary>
    public static T Build<T>(ResolvedOptions resolved, Func<BackendSelection, T> build)
    {
        var selection = Select(resolved);
        IBackend? owned = selection.Backend;
        try
        {
            try { return build(selection); }
            catch (CudaException e) when (selection.IsCuda && resolved.Device.Kind == DeviceKind.Auto)
            {
                owned = null;
                selection.Backend.Dispose();
                selection = Cpu(resolved.Options, $"device cpu: CUDA failed while loading the model: {e.Message}", warn: true);
                owned = selection.Backend;
                return build(selection);
            }
        }
        catch
        {
            owned?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Every check in order; on failure <paramref name="why"/> is the reason and <paramref name="warn"/> says whether
    /// a user with this machine should hear about it (a GPU is there but unusable) or not (no GPU at all). With layer
    /// offload, <paramref name="plan"/> says how many of the last layers go on the GPU (null when the weights are read
    /// in place from host memory: then all). Fails when not one layer fits.
    /// </summary>
    public static bool TryCuda(int ordinal, ResolvedOptions resolved, Split.GpuLayersRequest request,
        out CudaBackend? backend, out Split.OffloadPlan? plan, out string why, out bool warn)
    {
        var file = resolved.File;
        backend = null;
        plan = null;
        warn = false;
        if (!CudaProbe.TryGetDevice(ordinal, out var device, out why))
        {
            warn = CudaLibraries.DriverPath is not null && !why.Contains("cuInit returned 100", StringComparison.Ordinal)
                && !why.Contains("compute capability", StringComparison.Ordinal);
            return false;
        }
        warn = true;
        foreach (var t in file.Tensors)
        {
            if (!CudaKernels.Supports(t.Type))
            {
                why = $"{device}: the model has {GgmlTypes.Name(t.Type)} weights ({t.Name}), which the CUDA kernels do not read";
                return false;
            }
        }
        if (!CudaProbe.TryGetTarget(device!, out var target, out why)) return false;
        try
        {
            backend = new CudaBackend(device!, target, KernelCache.Default(), file);
            if (!backend.WeightsMapped)
            {
                var (free, _) = backend.MemoryInfo();
                plan = PlanOffload(resolved, request, free, backend.Device.Integrated);
                if (plan.NoneOnGpu && request.Auto)
                {
                    why = $"{device}: {plan.Reason}";
                    backend.Dispose();
                    backend = null;
                    return false;
                }
            }
            return true;
        }
        catch (Exception e) when (e is CudaException or KernelCompileException or EntryPointNotFoundException)
        {
            backend?.Dispose();
            backend = null;
            why = $"{device}: CUDA setup failed: {e.Message}";
            return false;
        }
    }

    /// <summary>The offload plan for the resolved model and request with <paramref name="freeBytes"/> of device memory.</summary>
    public static Split.OffloadPlan PlanOffload(ResolvedOptions resolved, Split.GpuLayersRequest request, long freeBytes, bool integrated)
    {
        var inputs = Split.OffloadPlanner.Measure(resolved.File, resolved.Config, resolved.ContextSize, resolved.MaxBatch, freeBytes, integrated);
        return Split.OffloadPlanner.Plan(request, inputs);
    }
}
