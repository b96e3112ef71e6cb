using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.ModelGen;

/// <summary>What to generate.</summary>
public sealed record ModelGenOptions
{
    public required ModelShape Shape { get; init; }
    public WeightFormat Format { get; init; } = WeightFormat.Q4_0;
    public ulong Seed { get; init; } = 1;

    /// <summary>Type of output.weight instead of llama.cpp's rule (null: the rule).</summary>
    public GgmlType? OutputType { get; init; }

    /// <summary>GGUF file whose tokenizer.* keys to copy (null: the Llama-2 vocab for 32000, else synthetic).</summary>
    public string? TokenizerFile { get; init; }

    /// <summary>Threads drawing blocks; 0 = one per core. The bytes do not depend on it.</summary>
    public int Threads { get; init; }

    public string Name { get; init; } = "random-llama";
}

/// <summary>One tensor of the plan: llama.cpp name, role, layer (−1 outside blocks), type, dims innermost-first.</summary>
public sealed record PlannedTensor(string Name, TensorRole Role, int Layer, GgmlType Type, long[] Dims)
{
    public long Bytes => GgufWriter.ByteSize(Type, Dims);

    /// <summary>Standard deviation of the weights: 1/√fan-in, so every matmul keeps activations O(1) (≈ 0.016-0.022 at 1.1B-7B, the N(0, 0.02) of real inits).</summary>
    public double Sigma => 1.0 / Math.Sqrt(Dims[0]);
}

/// <summary>What <see cref="ModelGenerator.Write"/> did.</summary>
public sealed record GenerationSummary(string Path, long FileBytes, long TensorBytes, int TensorCount, TimeSpan Elapsed, string VocabOrigin);

/// <summary>
/// Writes a random-weight GGUF of any family the engine runs (<see cref="ModelShape.Arch"/>): llama.cpp's
/// metadata keys and tensor names for that family (qwen2's q/k/v biases, qwen3/gemma3's q/k norms, phi3's fused
/// attn_qkv and gate|up, gemma2/3's post norms, tied embeddings, Llama 3's rope_freqs), a real or synthetic tokenizer,
/// and every tensor drawn block by block (<see cref="RandomBlocks"/>) in 1 MiB chunks on all cores, streamed
/// through <see cref="GgufWriter"/>'s callbacks (memory stays at a few chunks per thread; the file appears
/// only when complete, via NAME.partial). Each chunk has its own generator seeded from (seed, tensor name,
/// chunk index), so the bytes depend only on the options, never on the thread count or timing.
/// </summary>
public static class ModelGenerator
{
    /// <summary>Bytes drawn per chunk (rounded down to whole blocks); part of the determinism contract.</summary>
    public const int ChunkBytes = 1 << 20;

    /// <summary>Every tensor in file order, with its type; throws ArgumentException (one line) for an impossible request.</summary>
    public static IReadOnlyList<PlannedTensor> Plan(ModelGenOptions o)
    {
        var s = o.Shape;
        if (s.Problem() is { } why) throw new ArgumentException($"invalid shape: {why}");
        if (o.OutputType is { } ot && !RandomBlocks.IsSupported(ot))
            throw new ArgumentException($"output type {GgmlTypes.Name(ot)} is not one the generator writes ({EdgeLlm.Quant.TypeTraits.Names})");
        var list = new List<PlannedTensor>();
        void Add(string name, TensorRole role, int layer, long[] dims)
        {
            long ne0 = dims[0];
            var type = WeightFormats.TypeOf(o.Format, role, layer, s.Layers, o.OutputType, s.IsTied);
            int bs = GgmlTypes.BlockSize(type);
            if (ne0 % bs != 0 && WeightFormats.Fallback(type) is { } fallback && ne0 % GgmlTypes.BlockSize(fallback) == 0)
                (type, bs) = (fallback, GgmlTypes.BlockSize(fallback));
            if (ne0 % bs != 0)
                throw new ArgumentException(
                    $"--type {WeightFormats.Name(o.Format)}: tensor '{name}' has rows of {ne0}, not a multiple of the {GgmlTypes.Name(type)} block size {bs}");
            list.Add(new PlannedTensor(name, role, layer, type, dims));
        }
        Add(TensorNames.TokenEmbd, TensorRole.TokenEmbd, -1, s.Dims(TensorNames.TokenEmbd)!);
        if (s.RopeFreqs) Add(TensorNames.RopeFreqs, TensorRole.RopeFreqs, -1, s.Dims(TensorNames.RopeFreqs)!);
        for (int l = 0; l < s.Layers; l++)
            foreach (string t in TensorNames.BlockForwardOrder)
                if (s.BlockDims(t) is { } dims) Add(TensorNames.Block(l, t), RoleOf(t), l, dims);
        Add(TensorNames.OutputNorm, TensorRole.Norm, -1, s.Dims(TensorNames.OutputNorm)!);
        if (!s.IsTied) Add(TensorNames.Output, TensorRole.Output, -1, s.Dims(TensorNames.Output)!);
        return list;
    }

    /// <summary>The role of block tensor <paramref name="tensor"/> (a <see cref="TensorNames"/> suffix).</summary>
    private static TensorRole RoleOf(string tensor) => tensor switch
    {
        TensorNames.AttnQ => TensorRole.AttnQ,
        TensorNames.AttnK => TensorRole.AttnK,
        TensorNames.AttnV => TensorRole.AttnV,
        TensorNames.AttnQkv => TensorRole.AttnQkv,
        TensorNames.AttnOutput => TensorRole.AttnOutput,
        TensorNames.FfnGate => TensorRole.FfnGate,
        TensorNames.FfnUp => TensorRole.FfnUp,
        TensorNames.FfnDown => TensorRole.FfnDown,
        _ when tensor.EndsWith(".bias", StringComparison.Ordinal) => TensorRole.Bias,
        _ => TensorRole.Norm,
    };

    /// <summary>
    /// Generates the model into <paramref name="path"/>. <paramref name="progress"/> gets (bytes done, bytes
    /// total) after each tensor.
    /// </summary>
    public static GenerationSummary Write(ModelGenOptions o, string path, Action<long, long>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        var plan = Plan(o);
        var vocab = VocabSource.For(o.Shape.Vocab, o.TokenizerFile);
        int threads = o.Threads > 0 ? o.Threads : Environment.ProcessorCount;
        using var buffers = new ChunkBuffer(threads * 4 * (long)ChunkBytes);
        long total = WriteFile(path, plan, [.. Metadata(o), .. vocab.Keys], (stream, t) => WriteTensor(stream, t, o, threads, buffers), progress);
        return new GenerationSummary(path, new FileInfo(path).Length, total, plan.Count, clock.Elapsed, vocab.Origin);
    }

    /// <summary>
    /// The writer under <see cref="Write(ModelGenOptions, string, Action{long, long}?)"/>, for callers that adjust the
    /// plan or the metadata (the tests' fixtures): the metadata in order (a key given twice keeps its first place and
    /// its last value), then the planned tensors, each streamed in plan order by <paramref name="fill"/>, which must
    /// write exactly <see cref="PlannedTensor.Bytes"/> bytes. <paramref name="progress"/> gets (bytes done, bytes total)
    /// after each tensor. Returns the tensor bytes.
    /// </summary>
    public static long WriteFile(string path, IReadOnlyList<PlannedTensor> plan, IEnumerable<(string Key, GgufValue Value)> metadata,
        Action<Stream, PlannedTensor> fill, Action<long, long>? progress = null)
    {
        var w = new GgufWriter();
        foreach (var (key, value) in metadata) w.Set(key, value);
        long total = 0;
        foreach (var t in plan) total += t.Bytes;
        long done = 0;
        foreach (var t in plan)
        {
            var tensor = t;
            w.AddTensor(t.Name, t.Type, t.Dims, stream =>
            {
                fill(stream, tensor);
                done += tensor.Bytes;
                progress?.Invoke(done, total);
            });
        }
        w.Write(path);
        return total;
    }

    /// <summary>The llama.cpp metadata for the options (no tokenizer keys), in the order the file gets them.</summary>
    public static List<(string Key, GgufValue Value)> Metadata(ModelGenOptions o)
    {
        var s = o.Shape;
        string K(string key) => ModelKeys.Of(s.Arch, key);
        var inv = CultureInfo.InvariantCulture;
        string description = string.Format(inv,
            "random weights from edgellm-modelgen: {0}; type {1}; seed {2}{3}",
            s, WeightFormats.Name(o.Format), o.Seed, o.OutputType is { } ot ? "; output " + GgmlTypes.Name(ot) : "");
        var kv = new List<(string, GgufValue)>
        {
            (ModelKeys.Architecture, GgufValue.Of(s.Arch)),
            (ModelKeys.Name, GgufValue.Of(o.Name)),
            (ModelKeys.Description, GgufValue.Of(description)),
            (K(ModelKeys.ContextLength), GgufValue.Of((uint)s.Context)),
            (K(ModelKeys.EmbeddingLength), GgufValue.Of((uint)s.Dim)),
            (K(ModelKeys.BlockCount), GgufValue.Of((uint)s.Layers)),
            (K(ModelKeys.FeedForwardLength), GgufValue.Of((uint)s.Ffn)),
            (K(ModelKeys.HeadCount), GgufValue.Of((uint)s.Heads)),
            (K(ModelKeys.HeadCountKv), GgufValue.Of((uint)s.KvHeads)),
        };
        // llama.cpp's converters write key/value_length for Gemma always, for the others when the head is not dim / heads.
        if (s.KeyLength is not null || s.Family.WritesHeadLength)
        {
            kv.Add((K(ModelKeys.KeyLength), GgufValue.Of((uint)s.HeadDim)));
            kv.Add((K(ModelKeys.ValueLength), GgufValue.Of((uint)s.HeadDim)));
        }
        kv.Add((K(ModelKeys.RmsEps), GgufValue.Of(s.Eps)));
        kv.Add((K(ModelKeys.RopeDimensionCount), GgufValue.Of((uint)s.RotatedDims)));
        kv.Add((K(ModelKeys.RopeFreqBase), GgufValue.Of(s.FreqBase)));
        var family = s.Family;
        if (family.SwaPattern > 0) kv.Add((K(ModelKeys.SlidingWindow), GgufValue.Of((uint)s.SlidingWindow)));
        if (family.AttnSoftcapDefault > 0) kv.Add((K(ModelKeys.AttnSoftcap), GgufValue.Of(family.AttnSoftcapDefault)));
        if (family.FinalSoftcapDefault > 0) kv.Add((K(ModelKeys.FinalSoftcap), GgufValue.Of(family.FinalSoftcapDefault)));
        kv.Add((K(ModelKeys.VocabSize), GgufValue.Of((uint)s.Vocab)));
        kv.Add((ModelKeys.FileType, GgufValue.Of(WeightFormats.FileType(o.Format))));
        if (!o.Format.IsFloat) kv.Add((ModelKeys.QuantizationVersion, GgufValue.Of(2u)));
        kv.Add(("edgellm.modelgen.seed", GgufValue.Of(o.Seed)));
        return kv;
    }

    /// <summary>
    /// Llama 3's rope_freqs values as llama.cpp's converter writes them for rope_scaling type llama3 with Llama 3.1's
    /// numbers (factor 32, low/high frequency factors 1 and 4, original context 8192).
    /// </summary>
    public static float[] Llama3RopeFreqs(int headDim, float ropeBase) => Llama3Rope.Factors(headDim, ropeBase, 32, 1, 4, 8192);

    private static unsafe void WriteTensor(Stream stream, PlannedTensor t, ModelGenOptions o, int threads, ChunkBuffer buffer)
    {
        if (t.Role == TensorRole.RopeFreqs)
        {
            var f = Llama3RopeFreqs(o.Shape.RotatedDims, o.Shape.FreqBase);
            stream.Write(MemoryMarshal.AsBytes(f.AsSpan()));
            return;
        }
        ulong seed = o.Seed;
        var filler = new RandomBlocks(t.Type, t.Sigma, t.Role == TensorRole.Norm);
        int blockBytes = GgmlTypes.BlockBytes(t.Type);
        long blocks = t.Bytes / blockBytes;
        long chunkBlocks = Math.Max(1, ChunkBytes / blockBytes);
        long chunks = (blocks + chunkBlocks - 1) / chunkBlocks;
        int batch = (int)Math.Max(1, buffer.Bytes / (chunkBlocks * blockBytes));
        ulong tensorSeed = Mix(seed, NameHash(t.Name));
        nint baseAddr = (nint)buffer.Pointer;
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = threads };
        for (long c0 = 0; c0 < chunks; c0 += batch)
        {
            int n = (int)Math.Min(batch, chunks - c0);
            long firstBlock = c0 * chunkBlocks;
            long endBlock = Math.Min(blocks, (c0 + n) * chunkBlocks);
            void Draw(int i)
            {
                long c = c0 + i;
                long start = c * chunkBlocks;
                long count = Math.Min(chunkBlocks, blocks - start);
                filler.Fill((byte*)baseAddr + (start - firstBlock) * blockBytes, count, Mix(tensorSeed, (ulong)c));
            }
            if (n == 1 || threads == 1) for (int i = 0; i < n; i++) Draw(i);
            else Parallel.For(0, n, parallel, Draw);
            stream.Write(new ReadOnlySpan<byte>((byte*)baseAddr, checked((int)((endBlock - firstBlock) * blockBytes))));
        }
    }

    /// <summary>SplitMix64's finalizer over a combination of two words: independent streams per (tensor, chunk).</summary>
    internal static ulong Mix(ulong a, ulong b)
    {
        ulong z = a ^ (b * 0x9E3779B97F4A7C15UL + 0x632BE59BD9B4E019UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>FNV-1a over the UTF-16 code units of a tensor name.</summary>
    internal static ulong NameHash(string name)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (char c in name) h = (h ^ c) * 0x100000001B3UL;
        return h;
    }

    /// <summary>One native buffer reused for every tensor (a batch of chunks).</summary>
    private sealed unsafe class ChunkBuffer(long bytes) : IDisposable
    {
        public long Bytes { get; } = bytes;
        public byte* Pointer { get; private set; } = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);

        public void Dispose()
        {
            if (Pointer == null) return;
            NativeMemory.AlignedFree(Pointer);
            Pointer = null;
        }
    }
}
