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
/// first failed check as the reason. An explicit <c>cuda</c> that fails throws <see cref="EdgeLlmException"/> with
/// that reason, so the CLI prints one line and exits 1.
/// </summary>
public static class BackendSelector
{
    /// <summary>Device memory kept free beyond the estimate (activations, kernels, driver reserves).</summary>
    public const long MemoryMargin = 512L << 20;

    public static BackendSelection Select(BackendOptions options, GgufFile file)
    {
        var spec = DeviceSpec.Parse(options.Device);
        if (!Split.GpuLayersRequest.TryParse(options.GpuLayers, out var request))
            throw new EdgeLlmException($"--gpu-layers '{options.GpuLayers}' is not auto, all or a number of layers");
        string ignored = request.Auto ? "" : $"; --gpu-layers {request} ignored";
        if (spec.Kind == DeviceKind.Cpu) return Cpu(options, "device cpu (requested)" + ignored, warn: false);

        if (TryCuda(spec.Kind == DeviceKind.Cuda ? spec.Ordinal : 0, options, file, request, out var cuda, out var plan, out string why, out bool warn))
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
                cpu = new CpuBackend(options.Threads);
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
        new(new CpuBackend(options.Threads), description, IsCuda: false, Warn: warn);

    /// <summary>
    /// Every check in order; on failure <paramref name="why"/> is the reason and <paramref name="warn"/> says whether
    /// a user with this machine should hear about it (a GPU is there but unusable) or not (no GPU at all).
    /// </summary>
    public static bool TryCuda(int ordinal, BackendOptions options, GgufFile file, out CudaBackend? backend, out string why, out bool warn)
        => TryCuda(ordinal, options, file, Split.GpuLayersRequest.All, out backend, out _, out why, out warn);

    /// <summary>
    /// <see cref="TryCuda(int, BackendOptions, GgufFile, out CudaBackend?, out string, out bool)"/> with layer offload:
    /// <paramref name="plan"/> says how many of the last layers go on the GPU (null when the weights are read in place
    /// from host memory, or the model's shape cannot be read here: then all). Fails when not one layer fits.
    /// </summary>
    public static bool TryCuda(int ordinal, BackendOptions options, GgufFile file, Split.GpuLayersRequest request,
        out CudaBackend? backend, out Split.OffloadPlan? plan, out string why, out bool warn)
    {
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
                plan = PlanOffload(options, file, request, free, backend.Device.Integrated);
                if (plan is null)
                {
                    long need = EstimateDeviceBytes(options, file);
                    if (need + MemoryMargin > free)
                    {
                        why = $"{device}: the model needs about {need / 1e9:F1} GB of device memory, {free / 1e9:F1} GB is free";
                        backend.Dispose();
                        backend = null;
                        return false;
                    }
                }
                else if (plan.NoneOnGpu && request.Auto)
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

    /// <summary>The offload plan for this file and request with <paramref name="freeBytes"/> of device memory (null when the config cannot be read).</summary>
    public static Split.OffloadPlan? PlanOffload(BackendOptions options, GgufFile file, Split.GpuLayersRequest request, long freeBytes, bool integrated)
    {
        LlamaConfig c;
        try { c = LlamaConfig.FromGguf(file); }
        catch (EdgeLlmException) { return null; } // the model's own load reports what is wrong with it
        int ctx = options.ContextSize == 0 ? Math.Min(c.ContextLength, BackendOptions.DefaultContextCap) : options.ContextSize;
        var inputs = Split.OffloadPlanner.Measure(file, c, ctx, Math.Min(options.MaxBatch, Math.Max(ctx, 1)), freeBytes, integrated);
        return Split.OffloadPlanner.Plan(request, inputs);
    }

    /// <summary>Weights plus the fp16 KV cache of the context the model will get.</summary>
    public static long EstimateDeviceBytes(BackendOptions options, GgufFile file)
    {
        long weights = 0;
        foreach (var t in file.Tensors) weights += t.ByteSize;
        try
        {
            var c = LlamaConfig.FromGguf(file);
            int ctx = options.ContextSize == 0 ? Math.Min(c.ContextLength, BackendOptions.DefaultContextCap) : options.ContextSize;
            return weights + 2L * c.LayerCount * ctx * c.KvDim * sizeof(ushort);
        }
        catch (EdgeLlmException)
        {
            return weights; // the model's own load reports what is wrong with it
        }
    }
}
