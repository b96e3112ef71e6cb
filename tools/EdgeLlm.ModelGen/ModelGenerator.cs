using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using EdgeLlm.Gguf;

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
/// Writes a random-weight Llama GGUF: llama.cpp's metadata and tensor names, a real or synthetic tokenizer,
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
        void Add(string name, TensorRole role, int layer, long ne0, long ne1)
        {
            var type = WeightFormats.TypeOf(o.Format, role, layer, s.Layers, o.OutputType);
            int bs = GgmlTypes.BlockSize(type);
            if (ne0 % bs != 0)
                throw new ArgumentException(
                    $"--type {WeightFormats.Name(o.Format)}: tensor '{name}' has rows of {ne0}, not a multiple of the {GgmlTypes.Name(type)} block size {bs}");
            list.Add(new PlannedTensor(name, role, layer, type, role == TensorRole.Norm ? [ne0] : [ne0, ne1]));
        }
        Add("token_embd.weight", TensorRole.TokenEmbd, -1, s.Dim, s.Vocab);
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"blk.{l}.";
            Add(p + "attn_norm.weight", TensorRole.Norm, l, s.Dim, 1);
            Add(p + "attn_q.weight", TensorRole.AttnQ, l, s.Dim, s.Dim);
            Add(p + "attn_k.weight", TensorRole.AttnK, l, s.Dim, s.KvDim);
            Add(p + "attn_v.weight", TensorRole.AttnV, l, s.Dim, s.KvDim);
            Add(p + "attn_output.weight", TensorRole.AttnOutput, l, s.Dim, s.Dim);
            Add(p + "ffn_norm.weight", TensorRole.Norm, l, s.Dim, 1);
            Add(p + "ffn_gate.weight", TensorRole.FfnGate, l, s.Dim, s.Ffn);
            Add(p + "ffn_up.weight", TensorRole.FfnUp, l, s.Dim, s.Ffn);
            Add(p + "ffn_down.weight", TensorRole.FfnDown, l, s.Ffn, s.Dim);
        }
        Add("output_norm.weight", TensorRole.Norm, -1, s.Dim, 1);
        Add("output.weight", TensorRole.Output, -1, s.Dim, s.Vocab);
        return list;
    }

    /// <summary>
    /// Generates the model into <paramref name="path"/>. <paramref name="progress"/> gets (bytes done, bytes
    /// total) after each tensor.
    /// </summary>
    public static GenerationSummary Write(ModelGenOptions o, string path, Action<long, long>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        var plan = Plan(o);
        var vocab = VocabSource.For(o.Shape.Vocab, o.TokenizerFile);
        var w = new GgufWriter();
        foreach (var (key, value) in Metadata(o)) w.Set(key, value);
        foreach (var (key, value) in vocab.Keys) w.Set(key, value);

        int threads = o.Threads > 0 ? o.Threads : Environment.ProcessorCount;
        long total = 0;
        foreach (var t in plan) total += t.Bytes;
        long done = 0;
        using var buffers = new ChunkBuffer(threads * 4 * (long)ChunkBytes);
        foreach (var t in plan)
        {
            var tensor = t;
            w.AddTensor(t.Name, t.Type, t.Dims, stream =>
            {
                WriteTensor(stream, tensor, o.Seed, threads, buffers);
                done += tensor.Bytes;
                progress?.Invoke(done, total);
            });
        }
        w.Write(path);
        return new GenerationSummary(path, new FileInfo(path).Length, total, plan.Count, clock.Elapsed, vocab.Origin);
    }

    /// <summary>The llama.cpp metadata for the options (no tokenizer keys), in the order the file gets them.</summary>
    public static List<(string Key, GgufValue Value)> Metadata(ModelGenOptions o)
    {
        var s = o.Shape;
        var inv = CultureInfo.InvariantCulture;
        string description = string.Format(inv,
            "random weights from edgellm-modelgen: {0}; type {1}; seed {2}{3}",
            s, WeightFormats.Name(o.Format), o.Seed, o.OutputType is { } ot ? "; output " + GgmlTypes.Name(ot) : "");
        var kv = new List<(string, GgufValue)>
        {
            ("general.architecture", GgufValue.Of("llama")),
            ("general.name", GgufValue.Of(o.Name)),
            ("general.description", GgufValue.Of(description)),
            ("llama.context_length", GgufValue.Of((uint)s.Context)),
            ("llama.embedding_length", GgufValue.Of((uint)s.Dim)),
            ("llama.block_count", GgufValue.Of((uint)s.Layers)),
            ("llama.feed_forward_length", GgufValue.Of((uint)s.Ffn)),
            ("llama.attention.head_count", GgufValue.Of((uint)s.Heads)),
            ("llama.attention.head_count_kv", GgufValue.Of((uint)s.KvHeads)),
            ("llama.attention.layer_norm_rms_epsilon", GgufValue.Of(1e-5f)),
            ("llama.rope.dimension_count", GgufValue.Of((uint)s.HeadDim)),
            ("llama.rope.freq_base", GgufValue.Of(10000f)),
            ("llama.vocab_size", GgufValue.Of((uint)s.Vocab)),
            ("general.file_type", GgufValue.Of(WeightFormats.FileType(o.Format))),
        };
        if (!o.Format.IsFloat) kv.Add(("general.quantization_version", GgufValue.Of(2u)));
        kv.Add(("edgellm.modelgen.seed", GgufValue.Of(o.Seed)));
        return kv;
    }

    private static unsafe void WriteTensor(Stream stream, PlannedTensor t, ulong seed, int threads, ChunkBuffer buffer)
    {
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
