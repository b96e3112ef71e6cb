using EdgeLlm.IO;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Convert;

/// <summary>What to write.</summary>
public sealed record ConvertOptions
{
    public OutputType Type { get; init; } = OutputType.F16;

    /// <summary>general.name (default: the checkpoint's name).</summary>
    public string? Name { get; init; }

    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>llama.context_length to write instead of the checkpoint's.</summary>
    public int? ContextLength { get; init; }

    /// <summary>A tokenizer to use instead of the checkpoint's own.</summary>
    public TokenizerData? Tokenizer { get; init; }

    /// <summary>Allow converting tensors that are already quantized in a GGUF source into another type (precision is lost twice).</summary>
    public bool AllowRequantize { get; init; }

    /// <summary>Draw a progress bar (stderr is a terminal) instead of one log line per tensor.</summary>
    public bool ProgressBar { get; init; }

    /// <summary>Floats read per chunk (the streaming buffer); small values exercise the chunking in tests.</summary>
    internal long ChunkFloats { get; init; } = TensorEncoder.DefaultChunkFloats;
}

/// <summary>One written tensor: its name, ggml type and XXH64.</summary>
public readonly record struct WrittenTensor(string Name, GgmlType Type, long Bytes, ulong Xxh64);

public sealed record ConvertResult(string Path, IReadOnlyList<WrittenTensor> Tensors, long FileBytes, long InputBytes, TimeSpan Elapsed);

/// <summary>
/// Converts an opened checkpoint into a GGUF file: checks its tensors against the hyperparameters, picks each
/// tensor's type (<see cref="QuantPolicy"/>), and streams the tensors one by one, chunk by chunk, through
/// <see cref="GgufWriter"/> into <c>OUTPUT.partial</c>; the checksums are patched into the metadata once the data
/// is written, the file is flushed to disk and only then renamed to OUTPUT. Any failure or cancellation
/// deletes the partial file, so nothing that looks valid is left behind.
/// </summary>
public static class Converter
{
    public static ConvertResult Convert(CheckpointSource source, string outputPath, ConvertOptions o, TextWriter log, CancellationToken ct = default)
    {
        var p = source.Params;
        var tok = o.Tokenizer ?? source.Tokenizer;
        var tensors = new List<SourceTensor>(source.Tensors);
        if (p.RopeFreqFactors is { } factors && !tensors.Exists(t => t.Name == TensorNames.RopeFreqs))
            tensors.Insert(Math.Min(1, tensors.Count), new ArrayTensor { Name = TensorNames.RopeFreqs, Shape = [factors.Length], DType = SourceDType.F32, Data = factors });
        if (p.GeneratedTensors is { } generated)
        {
            int at = Math.Min(1, tensors.Count);
            foreach (var (name, data) in generated)
                if (!tensors.Exists(t => t.Name == name))
                    tensors.Insert(at++, new ArrayTensor { Name = name, Shape = [data.Length], DType = SourceDType.F32, Data = data });
        }
        if (source is not GgufSource) CheckTensors(tensors, p, source.Format);
        if (o.ContextLength is int ctx && ctx <= 0) throw new EdgeLlmException($"context length {ctx} must be positive");

        bool hasOutput = tensors.Exists(t => t.Name == TensorNames.Output);
        var shape = QuantPolicy.ModelFacts.Of(p.Shape, hasOutput);
        var types = new GgmlType[tensors.Count];
        bool anyQuantized = false;
        var fallbacks = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var choices = QuantPolicy.ChooseAll(o.Type, tensors.ConvertAll(t => (t.Name, t.GgufDims)), shape);
        for (int i = 0; i < tensors.Count; i++)
        {
            var choice = choices[i];
            if (choice.Fallback is { } why)
            {
                if (!fallbacks.TryGetValue(why, out var names)) fallbacks[why] = names = new List<string>();
                names.Add(tensors[i].Name);
            }
            types[i] = choice.Type;
            anyQuantized |= QuantPolicy.IsQuantized(choice.Type);
            if (tensors[i] is GgufSourceTensor g && QuantPolicy.IsQuantized(g.RawType) && g.RawType != choice.Type && !o.AllowRequantize)
                throw new EdgeLlmException($"{((GgufSource)source).File.Path}: tensor '{g.Name}' is already quantized ({GgmlTypes.Name(g.RawType)}); " +
                    $"re-quantizing it to {GgmlTypes.Name(choice.Type)} loses precision twice: pass --allow-requantize to do it anyway");
        }
        foreach (var (why, names) in fallbacks)
        {
            string list = names.Count <= 3 ? string.Join(", ", names) : $"{string.Join(", ", names.Take(3))} and {names.Count - 3} more";
            log.WriteLine($"edgellm-convert: {list}: {why}");
        }

        var w = new GgufWriter();
        GgufOutput.AddMetadata(w, source, tok, o.Tokenizer is not null, o.Type, anyQuantized, o.Name, o.ContextLength, tensors.Count);
        long totalInput = 0;
        foreach (var t in tensors) totalInput += TensorEncoder.InputBytes(t);
        var progress = new ConvertProgress(log, o.ProgressBar, tensors.Count, totalInput);
        var encoder = new TensorEncoder(Math.Max(1, o.Threads), o.ChunkFloats);
        var written = new WrittenTensor[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            int index = i;
            var t = tensors[i];
            var type = types[i];
            long bytes = GgufWriter.ByteSize(type, t.GgufDims);
            string from = t is GgufSourceTensor gt ? GgmlTypes.Name(gt.RawType) : t.DType.ToString();
            string what = $"{from,-4} [{string.Join(", ", t.GgufDims)}] -> {GgmlTypes.Name(type)}";
            w.AddTensor(t.Name, type, t.GgufDims, s =>
            {
                progress.BeginTensor(index, t.Name, what);
                var h = new XxHash64();
                encoder.Encode(t, type, s, h, progress.Advance, ct);
                written[index] = new WrittenTensor(t.Name, type, bytes, h.GetCurrentHashAsUInt64());
                progress.EndTensor(bytes);
            });
        }

        string full = Path.GetFullPath(outputPath);
        if (source is GgufSource gs && string.Equals(Path.GetFullPath(gs.File.Path), full, StringComparison.Ordinal))
            throw new EdgeLlmException($"{outputPath}: the output would overwrite the input");
        try
        {
            using var output = OutputFile.Create(full);
            w.Write(output.Stream);
            output.Close();
            progress.Finish();
            PatchChecksums(output.PartialPath, written);
            CheckLoadable(output.PartialPath, outputPath);
            output.Commit();
        }
        catch
        {
            progress.Finish();
            throw;
        }
        return new ConvertResult(full, written, new FileInfo(full).Length, totalInput, progress.Elapsed);
    }

    /// <summary>
    /// Opens the finished file the way edgellm does (hyperparameters and every tensor bound and checked), so the
    /// converter never leaves a file its own runtime refuses (an eps, rope base or context out of range, a shape that
    /// does not fit); the reason is the runtime's own one-line message.
    /// </summary>
    private static void CheckLoadable(string partial, string outputPath)
    {
        using var f = GgufFile.Open(partial);
        try
        {
            var config = EdgeLlm.Model.LlamaConfig.FromGguf(f);
            _ = new EdgeLlm.Model.LlamaWeights(f, config);
        }
        catch (EdgeLlm.Model.ModelFormatException e)
        {
            throw new EdgeLlmException($"{outputPath}: not written, because edgellm would refuse the result: {e.Message}");
        }
    }

    /// <summary>Writes the XXH64s into the placeholder u64 array, found by re-reading the finished file.</summary>
    private static void PatchChecksums(string path, WrittenTensor[] written)
    {
        long valueAt;
        using (var f = GgufFile.Open(path))
        {
            long keyAt = f.GetKeyOffset(TensorChecksums.MetadataKey);
            if (keyAt < 0 || f.Get(TensorChecksums.MetadataKey)?.Value is not ulong[] a || a.Length != written.Length || f.Tensors.Count != written.Length)
                throw new InvalidOperationException("checksum placeholder not found in the written file");
            for (int i = 0; i < written.Length; i++)
                if (f.Tensors[i].Name != written[i].Name) throw new InvalidOperationException($"tensor {i} is '{f.Tensors[i].Name}', expected '{written[i].Name}'");
            // key: u64 length + bytes; value: u32 type (array), u32 element type, u64 count, then the elements.
            valueAt = keyAt + 8 + Encoding.UTF8.GetByteCount(TensorChecksums.MetadataKey) + 4 + 4 + 8;
        }
        var hashes = new ulong[written.Length];
        for (int i = 0; i < hashes.Length; i++) hashes[i] = written[i].Xxh64;
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.None);
        fs.Position = valueAt;
        fs.Write(MemoryMarshal.AsBytes(hashes.AsSpan()));
        fs.Flush(flushToDisk: true);
    }

    /// <summary>Every llama tensor present with the shape the hyperparameters imply, and nothing else.</summary>
    internal static void CheckTensors(List<SourceTensor> tensors, LlamaParams p, string format)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (!names.Add(t.Name)) throw new EdgeLlmException($"{format}: tensor '{t.Name}' appears twice");
            var want = LlamaLayout.ExpectedShape(t.Name, p)
                ?? throw new EdgeLlmException($"{format}: unexpected tensor '{t.Name}' (not part of a {p.Shape.Layers}-layer {p.Shape.Arch} model)");
            if (!t.Shape.AsSpan().SequenceEqual(want))
                throw new EdgeLlmException($"{format}: tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}], the hyperparameters imply [{string.Join(", ", want)}]");
        }
        var required = new List<string> { TensorNames.TokenEmbd, TensorNames.OutputNorm };
        for (int i = 0; i < p.Shape.Layers; i++)
            foreach (string s in p.Shape.Family.BlockTensors) required.Add(TensorNames.Block(i, s));
        foreach (string r in required)
            if (!names.Contains(r)) throw new EdgeLlmException($"{format}: tensor '{r}' is missing");
    }
}
