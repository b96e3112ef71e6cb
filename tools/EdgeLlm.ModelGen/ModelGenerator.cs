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
        var arch = Model.ArchSpec.Find(s.Arch)!;
        var list = new List<PlannedTensor>();
        void Add(string name, TensorRole role, int layer, long ne0, long ne1)
        {
            var type = WeightFormats.TypeOf(o.Format, role, layer, s.Layers, o.OutputType, s.IsTied);
            int bs = GgmlTypes.BlockSize(type);
            if (ne0 % bs != 0 && WeightFormats.Fallback(type) is { } fallback && ne0 % GgmlTypes.BlockSize(fallback) == 0)
                (type, bs) = (fallback, GgmlTypes.BlockSize(fallback));
            if (ne0 % bs != 0)
                throw new ArgumentException(
                    $"--type {WeightFormats.Name(o.Format)}: tensor '{name}' has rows of {ne0}, not a multiple of the {GgmlTypes.Name(type)} block size {bs}");
            bool vector = role is TensorRole.Norm or TensorRole.Bias or TensorRole.RopeFreqs;
            list.Add(new PlannedTensor(name, role, layer, type, vector ? [ne0] : [ne0, ne1]));
        }
        Add("token_embd.weight", TensorRole.TokenEmbd, -1, s.Dim, s.Vocab);
        if (s.RopeFreqs) Add(Model.LlamaWeights.RopeFreqsName, TensorRole.RopeFreqs, -1, s.HeadDim / 2, 1);
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"blk.{l}.";
            Add(p + "attn_norm.weight", TensorRole.Norm, l, s.Dim, 1);
            if (arch.FusedQkv) Add(p + "attn_qkv.weight", TensorRole.AttnQkv, l, s.Dim, s.QDim + 2L * s.KvDim);
            else
            {
                Add(p + "attn_q.weight", TensorRole.AttnQ, l, s.Dim, s.QDim);
                Add(p + "attn_k.weight", TensorRole.AttnK, l, s.Dim, s.KvDim);
                Add(p + "attn_v.weight", TensorRole.AttnV, l, s.Dim, s.KvDim);
            }
            if (arch.RequiresQkvBias)
            {
                Add(p + "attn_q.bias", TensorRole.Bias, l, s.QDim, 1);
                Add(p + "attn_k.bias", TensorRole.Bias, l, s.KvDim, 1);
                Add(p + "attn_v.bias", TensorRole.Bias, l, s.KvDim, 1);
            }
            if (arch.QkNorm)
            {
                Add(p + "attn_q_norm.weight", TensorRole.Norm, l, s.HeadDim, 1);
                Add(p + "attn_k_norm.weight", TensorRole.Norm, l, s.HeadDim, 1);
            }
            Add(p + "attn_output.weight", TensorRole.AttnOutput, l, s.QDim, s.Dim);
            if (arch.PostNorms) Add(p + "post_attention_norm.weight", TensorRole.Norm, l, s.Dim, 1);
            Add(p + "ffn_norm.weight", TensorRole.Norm, l, s.Dim, 1);
            if (arch.FusedGateUp) Add(p + "ffn_up.weight", TensorRole.FfnUp, l, s.Dim, 2L * s.Ffn);
            else
            {
                Add(p + "ffn_gate.weight", TensorRole.FfnGate, l, s.Dim, s.Ffn);
                Add(p + "ffn_up.weight", TensorRole.FfnUp, l, s.Dim, s.Ffn);
            }
            Add(p + "ffn_down.weight", TensorRole.FfnDown, l, s.Ffn, s.Dim);
            if (arch.PostNorms) Add(p + "post_ffw_norm.weight", TensorRole.Norm, l, s.Dim, 1);
        }
        Add("output_norm.weight", TensorRole.Norm, -1, s.Dim, 1);
        if (!s.IsTied) Add("output.weight", TensorRole.Output, -1, s.Dim, s.Vocab);
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
                WriteTensor(stream, tensor, o, threads, buffers);
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
        var d = ArchDefaults.For(s.Arch);
        string a = s.Arch + ".";
        var inv = CultureInfo.InvariantCulture;
        string description = string.Format(inv,
            "random weights from edgellm-modelgen: {0}; type {1}; seed {2}{3}",
            s, WeightFormats.Name(o.Format), o.Seed, o.OutputType is { } ot ? "; output " + GgmlTypes.Name(ot) : "");
        var kv = new List<(string, GgufValue)>
        {
            ("general.architecture", GgufValue.Of(s.Arch)),
            ("general.name", GgufValue.Of(o.Name)),
            ("general.description", GgufValue.Of(description)),
            (a + "context_length", GgufValue.Of((uint)s.Context)),
            (a + "embedding_length", GgufValue.Of((uint)s.Dim)),
            (a + "block_count", GgufValue.Of((uint)s.Layers)),
            (a + "feed_forward_length", GgufValue.Of((uint)s.Ffn)),
            (a + "attention.head_count", GgufValue.Of((uint)s.Heads)),
            (a + "attention.head_count_kv", GgufValue.Of((uint)s.KvHeads)),
        };
        // llama.cpp's converters write key/value_length for Gemma always, for the others when the head is not dim / heads.
        if (s.KeyLength is not null || s.Arch.StartsWith("gemma", StringComparison.Ordinal))
        {
            kv.Add((a + "attention.key_length", GgufValue.Of((uint)s.HeadDim)));
            kv.Add((a + "attention.value_length", GgufValue.Of((uint)s.HeadDim)));
        }
        kv.Add((a + "attention.layer_norm_rms_epsilon", GgufValue.Of(d.RmsEps)));
        kv.Add((a + "rope.dimension_count", GgufValue.Of((uint)s.HeadDim)));
        kv.Add((a + "rope.freq_base", GgufValue.Of(s.RopeBase ?? d.RopeBase)));
        if (Model.ArchSpec.Find(s.Arch) is { SwaPattern: > 0 })
            kv.Add((a + "attention.sliding_window", GgufValue.Of((uint)(s.Window ?? d.Window))));
        if (d.AttnSoftcap > 0) kv.Add((a + "attn_logit_softcapping", GgufValue.Of(d.AttnSoftcap)));
        if (d.FinalSoftcap > 0) kv.Add((a + "final_logit_softcapping", GgufValue.Of(d.FinalSoftcap)));
        kv.Add((a + "vocab_size", GgufValue.Of((uint)s.Vocab)));
        kv.Add(("general.file_type", GgufValue.Of(WeightFormats.FileType(o.Format))));
        if (!o.Format.IsFloat) kv.Add(("general.quantization_version", GgufValue.Of(2u)));
        kv.Add(("edgellm.modelgen.seed", GgufValue.Of(o.Seed)));
        return kv;
    }

    /// <summary>
    /// Llama 3's rope_freqs values (what llama.cpp's converter writes for rope_scaling type llama3): per rotated
    /// pair i, the divisor of its frequency base^(−2i/dims): 1 for wavelengths under 8192/4, 32 over 8192, and a
    /// smooth blend between (factor 32, low/high frequency factors 1 and 4, original context 8192).
    /// </summary>
    public static float[] Llama3RopeFreqs(int headDim, float ropeBase)
    {
        const double factor = 32, low = 1, high = 4, original = 8192;
        double lowWavelen = original / low, highWavelen = original / high;
        var f = new float[headDim / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double freq = 1.0 / Math.Pow(ropeBase, 2.0 * i / headDim);
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highWavelen) f[i] = 1f;
            else if (wavelen > lowWavelen) f[i] = (float)factor;
            else
            {
                double smooth = (original / wavelen - low) / (high - low);
                f[i] = (float)(1 / ((1 - smooth) / factor + smooth));
            }
        }
        return f;
    }

    private static unsafe void WriteTensor(Stream stream, PlannedTensor t, ModelGenOptions o, int threads, ChunkBuffer buffer)
    {
        if (t.Role == TensorRole.RopeFreqs)
        {
            var f = Llama3RopeFreqs(o.Shape.HeadDim, o.Shape.RopeBase ?? ArchDefaults.For(o.Shape.Arch).RopeBase);
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
