using System.Globalization;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Split;

/// <summary>What --gpu-layers asked for: a count of layers (from the end of the model), all, or auto (what fits).</summary>
public readonly record struct GpuLayersRequest(bool Auto, int Count)
{
    public static GpuLayersRequest AutoFit => new(true, 0);
    public static GpuLayersRequest All => new(false, int.MaxValue);

    /// <summary>"auto", "all", or a non-negative count (more than the model has means all).</summary>
    public static bool TryParse(string? text, out GpuLayersRequest request)
    {
        string s = (text ?? "auto").Trim();
        if (s.Equals("auto", StringComparison.OrdinalIgnoreCase)) { request = AutoFit; return true; }
        if (s.Equals("all", StringComparison.OrdinalIgnoreCase)) { request = All; return true; }
        if (int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int n)) { request = new(false, n); return true; }
        request = default;
        return false;
    }

    public static GpuLayersRequest Parse(string? text) => TryParse(text, out var r) ? r
        : throw new ArgumentException($"--gpu-layers '{text}' is not auto, all or a number of layers");

    public override string ToString() => Auto ? "auto" : Count == int.MaxValue ? "all" : Count.ToString(CultureInfo.InvariantCulture);
}

/// <summary>The device-memory picture the planner decides from (all sizes in bytes).</summary>
public sealed record OffloadInputs
{
    /// <summary>Free device memory (cuMemGetInfo).</summary>
    public required long FreeBytes { get; init; }

    /// <summary>Kept free beyond the estimate (driver reserves, kernels, fragmentation).</summary>
    public long MarginBytes { get; init; } = OffloadPlanner.DefaultMargin;

    /// <summary>Weights of each layer (blk.N.* tensors), in layer order.</summary>
    public required long[] LayerWeightBytes { get; init; }

    /// <summary>K and V cache of one layer for the whole context, as the device stores it.</summary>
    public required long KvBytesPerLayer { get; init; }

    /// <summary>Output norm and output projection (on the device whenever any layer is).</summary>
    public required long OutputBytes { get; init; }

    /// <summary>Activation buffers and backend scratch on the device.</summary>
    public required long ScratchBytes { get; init; }

    /// <summary>An integrated GPU (Jetson): device and host share the memory, so offloading saves nothing; auto means all.</summary>
    public bool Integrated { get; init; }
}

/// <summary>How many of the last layers go on the device, and why (the log line).</summary>
public sealed record OffloadPlan(int GpuLayers, int LayerCount, long DeviceBytes, string Reason)
{
    public int CpuLayers => LayerCount - GpuLayers;
    public bool AllOnGpu => GpuLayers == LayerCount;
    public bool NoneOnGpu => GpuLayers == 0;
}

/// <summary>
/// Picks how many layers to offload: with a count or "all", that many (capped at the model's); with "auto", all of
/// them on an integrated GPU, else as many of the last layers as fit in the free device memory after the margin, the
/// scratch and the output layer, each layer costing its weights plus its KV cache.
/// </summary>
public static class OffloadPlanner
{
    /// <summary>The stated margin: device memory left free beyond the estimate.</summary>
    public const long DefaultMargin = 512L << 20;

    public static OffloadPlan Plan(GpuLayersRequest request, OffloadInputs m)
    {
        int layers = m.LayerWeightBytes.Length;
        if (layers < 1) throw new ArgumentException("a model without layers cannot be planned", nameof(m));
        long Cost(int n)
        {
            if (n == 0) return 0;
            long bytes = m.OutputBytes + m.ScratchBytes;
            for (int l = layers - n; l < layers; l++) bytes += m.LayerWeightBytes[l] + m.KvBytesPerLayer;
            return bytes;
        }
        string Gb(long b) => (b / 1e9).ToString("F2", CultureInfo.InvariantCulture) + " GB";

        if (!request.Auto)
        {
            int n = Math.Min(request.Count, layers);
            string why = n == layers ? $"--gpu-layers {request}: all {layers} layers" : $"--gpu-layers {request}";
            return new OffloadPlan(n, layers, Cost(n), $"{why}; about {Gb(Cost(n))} of device memory, {Gb(m.FreeBytes)} free");
        }
        if (m.Integrated)
            return new OffloadPlan(layers, layers, Cost(layers), "integrated GPU (memory shared with the CPU): all layers on the GPU");

        long budget = m.FreeBytes - m.MarginBytes;
        int fit = 0;
        while (fit < layers && Cost(fit + 1) <= budget) fit++;
        string margin = $"{Gb(m.FreeBytes)} free, {Gb(m.MarginBytes)} margin";
        if (fit == layers)
            return new OffloadPlan(layers, layers, Cost(layers), $"auto: the whole model fits (about {Gb(Cost(layers))}; {margin})");
        if (fit == 0)
            return new OffloadPlan(0, layers, 0, $"auto: not even one layer fits (output {Gb(m.OutputBytes)} + scratch {Gb(m.ScratchBytes)} + a layer {Gb(m.LayerWeightBytes[^1] + m.KvBytesPerLayer)} > {margin})");
        return new OffloadPlan(fit, layers, Cost(fit),
            $"auto: {fit} of {layers} layers fit (about {Gb(Cost(fit))} with the KV cache, output and scratch; the whole model needs {Gb(Cost(layers))}; {margin})");
    }

    /// <summary>
    /// The planner's inputs for a model file: per-layer weight bytes from the tensor table (blk.N.*), the output
    /// layer (output norm and output.weight, or the embedding table when the output is tied to it), the KV cache of
    /// <paramref name="contextSize"/> positions at <paramref name="kvBytesPerValue"/> bytes a value (2 for the CUDA
    /// fp16 cache), and the activation buffers for <paramref name="maxBatch"/> tokens plus the same again for the
    /// backend's scratch.
    /// </summary>
    public static OffloadInputs Measure(GgufFile file, LlamaConfig c, int contextSize, int maxBatch, long freeBytes, bool integrated, int kvBytesPerValue = 2)
    {
        var layerBytes = new long[c.LayerCount];
        long output = 0, embeddings = 0;
        bool tied = true;
        foreach (var t in file.Tensors)
        {
            string name = t.Name;
            int l = TensorNames.BlockLayer(name);
            if (l >= 0)
            {
                if (l < c.LayerCount) layerBytes[l] += t.ByteSize;
            }
            else if (name.StartsWith("output", StringComparison.Ordinal))
            {
                output += t.ByteSize;
                if (name == TensorNames.Output) tied = false;
            }
            else if (name == TensorNames.TokenEmbd) embeddings = t.ByteSize;
        }
        if (tied) output += embeddings; // the output projection is the embedding table: a copy goes on the device
        long kv = 2L * contextSize * c.KvDim * kvBytesPerValue;
        long activations = (long)maxBatch * (2L * c.Dim + 2L * c.QDim + 2L * c.KvDim + 2L * c.FfnDim + c.VocabSize) * sizeof(float);
        return new OffloadInputs
        {
            FreeBytes = freeBytes,
            LayerWeightBytes = layerBytes,
            KvBytesPerLayer = kv,
            OutputBytes = output,
            ScratchBytes = 2 * activations,
            Integrated = integrated,
        };
    }
}
