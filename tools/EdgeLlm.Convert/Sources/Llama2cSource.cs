using System.Buffers.Binary;
using EdgeLlm.Model;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// A llama.c checkpoint (<c>.bin</c>, karpathy/llama2.c export.py), in one of three layouts:
/// <list type="bullet">
/// <item>v0 (legacy): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), a negative
/// vocab_size meaning an unshared classifier; then fp32 token embedding, rms_att[L], wq[L], wk[L], wv[L], wo[L],
/// rms_ffn[L], w1[L], w2[L], w3[L], rms_final, freq_cis_real and freq_cis_imag (seq_len x head_dim/2 each,
/// unused) and, if unshared, wcls.</item>
/// <item>v1: a 256-byte header: u32 magic 0x616b3432 ("ak42"), int32 version 1, the 7 ints, u8 shared_classifier;
/// then fp32 rms_att[L], rms_ffn[L], rms_final, token embedding, wq..w3 per layer, and wcls if unshared.</item>
/// <item>v2: the v1 header plus int32 group_size at byte 37; fp32 norms as v1, then each of token embedding,
/// wq..w3 per layer and wcls as int8 values followed by one fp32 scale per group of group_size values
/// (symmetric Q8_0-like, value = q x scale), dequantized here.</item>
/// </list>
/// Weights are in Meta's RoPE layout (no permutation). A shared classifier writes no <c>output.weight</c>.
/// The tokenizer is <c>tokenizer.bin</c> or <c>tok{vocab}.bin</c> beside the checkpoint unless one is given.
/// </summary>
public sealed unsafe class Llama2cSource : CheckpointSource
{
    public const uint Magic = 0x616b3432;

    private readonly MappedFile _file;
    private readonly Lazy<TokenizerData> _tokenizer;

    public override string Format { get; }
    public override LlamaParams Params { get; }
    public override TokenizerData Tokenizer => _tokenizer.Value;
    public override IReadOnlyList<SourceTensor> Tensors { get; }

    /// <summary>0, 1 or 2.</summary>
    public int Version { get; }
    public bool SharedClassifier { get; }

    private Llama2cSource(MappedFile file, int version, bool shared, LlamaParams p, List<SourceTensor> tensors)
    {
        _file = file;
        Version = version;
        SharedClassifier = shared;
        Params = p;
        Tensors = tensors;
        Format = $"llama2.c v{version}";
        _tokenizer = new Lazy<TokenizerData>(() => TokenizerLoader.Load(FindTokenizer(file.Path, p.Shape.Vocab), p.Shape.Vocab));
    }

    public static Llama2cSource Open(string path)
    {
        var f = MappedFile.Open(path);
        try { return Parse(f); }
        catch { f.Dispose(); throw; }
    }

    private static Llama2cSource Parse(MappedFile f)
    {
        byte[] span = new ReadOnlySpan<byte>(f.Base, (int)Math.Min(f.Length, 256)).ToArray();
        if (span.Length < 28) throw Bad(f, $"truncated: {f.Length} bytes, too short for a header");
        int I(int at) => BinaryPrimitives.ReadInt32LittleEndian(span.AsSpan(at));
        int version, headerBytes, groupSize = 0, at;
        bool shared;
        if (BinaryPrimitives.ReadUInt32LittleEndian(span) == Magic)
        {
            if (span.Length < 256) throw Bad(f, $"truncated: {f.Length} bytes, the v1/v2 header is 256");
            version = I(4);
            if (version is not (1 or 2)) throw Bad(f, $"version {version} is not supported (1 and 2 are)");
            at = 8;
            shared = span[36] != 0;
            if (version == 2) groupSize = I(37);
            headerBytes = 256;
        }
        else
        {
            version = 0;
            at = 0;
            shared = I(20) > 0;
            headerBytes = 28;
        }
        int dim = I(at), hidden = I(at + 4), layers = I(at + 8), heads = I(at + 12), kvHeads = I(at + 16), vocab = Math.Abs(I(at + 20)), seqLen = I(at + 24);
        if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab <= 0 || seqLen <= 0
            || dim > 1 << 16 || hidden > 1 << 18 || layers > 1024 || vocab > 1 << 22 || seqLen > 1 << 24)
            throw Bad(f, $"implausible header (dim {dim}, hidden_dim {hidden}, layers {layers}, heads {heads}, kv_heads {kvHeads}, vocab {vocab}, seq_len {seqLen}): not a llama2.c checkpoint?");
        if (dim % heads != 0 || heads % kvHeads != 0) throw Bad(f, $"{heads} heads / {kvHeads} kv heads do not divide dim {dim}");
        if (version == 2 && (groupSize <= 0 || dim % groupSize != 0)) throw Bad(f, $"group_size {groupSize} does not divide dim {dim}");

        var p = new LlamaParams
        {
            Shape = new ModelShape
            {
                Dim = dim, Layers = layers, Heads = heads, KvHeads = kvHeads, Ffn = hidden, Vocab = vocab,
                RmsEps = 1e-5f, RopeBase = 10000f, Context = seqLen,
            },
            Name = System.IO.Path.GetFileNameWithoutExtension(f.Path),
        };
        long hd = dim / heads, kvDim = hd * kvHeads;
        var l = new Layout(f, headerBytes, version == 2 ? groupSize : 0);
        var t = new Dictionary<string, SourceTensor>(StringComparer.Ordinal);
        void PerLayerF32(string suffix, params long[] shape) { for (int i = 0; i < layers; i++) t[TensorNames.Block(i, suffix)] = l.F32(TensorNames.Block(i, suffix), shape); }
        void PerLayerW(string suffix, params long[] shape) { for (int i = 0; i < layers; i++) t[TensorNames.Block(i, suffix)] = l.Weight(TensorNames.Block(i, suffix), shape); }

        if (version == 0)
        {
            t[TensorNames.TokenEmbd] = l.F32(TensorNames.TokenEmbd, vocab, dim);
            PerLayerF32(TensorNames.AttnNorm, dim);
            PerLayerF32(TensorNames.AttnQ, dim, dim);
            PerLayerF32(TensorNames.AttnK, kvDim, dim);
            PerLayerF32(TensorNames.AttnV, kvDim, dim);
            PerLayerF32(TensorNames.AttnOutput, dim, dim);
            PerLayerF32(TensorNames.FfnNorm, dim);
            PerLayerF32(TensorNames.FfnGate, hidden, dim);
            PerLayerF32(TensorNames.FfnDown, dim, hidden);
            PerLayerF32(TensorNames.FfnUp, hidden, dim);
            t[TensorNames.OutputNorm] = l.F32(TensorNames.OutputNorm, dim);
            l.Skip(2L * seqLen * (hd / 2) * 4); // freq_cis_real, freq_cis_imag
            if (!shared) t[TensorNames.Output] = l.F32(TensorNames.Output, vocab, dim);
        }
        else
        {
            PerLayerF32(TensorNames.AttnNorm, dim);
            PerLayerF32(TensorNames.FfnNorm, dim);
            t[TensorNames.OutputNorm] = l.F32(TensorNames.OutputNorm, dim);
            t[TensorNames.TokenEmbd] = l.Weight(TensorNames.TokenEmbd, vocab, dim);
            PerLayerW(TensorNames.AttnQ, dim, dim);
            PerLayerW(TensorNames.AttnK, kvDim, dim);
            PerLayerW(TensorNames.AttnV, kvDim, dim);
            PerLayerW(TensorNames.AttnOutput, dim, dim);
            PerLayerW(TensorNames.FfnGate, hidden, dim);
            PerLayerW(TensorNames.FfnDown, dim, hidden);
            PerLayerW(TensorNames.FfnUp, hidden, dim);
            if (!shared) t[TensorNames.Output] = l.Weight(TensorNames.Output, vocab, dim);
        }
        if (l.At != f.Length)
            throw Bad(f, $"{(l.At > f.Length ? "truncated" : "unexpected size")}: {f.Length} bytes, the v{version} header implies {l.At}");
        var ordered = LlamaLayout.Order(t.Values, x => x.Name, layers);
        return new Llama2cSource(f, version, shared, p, ordered);
    }

    /// <summary>Walks the file assigning consecutive byte ranges to tensors; fails past the end (truncated file).</summary>
    private sealed class Layout(MappedFile f, long start, int groupSize)
    {
        public long At { get; private set; } = start;

        public void Skip(long bytes) => At += bytes;

        public SourceTensor F32(string name, params long[] shape)
        {
            var t = new MappedTensor { Name = name, Shape = shape, DType = SourceDType.F32, File = f, Offset = At };
            At += t.ByteLength;
            if (At > f.Length) throw Bad(f, $"truncated: tensor {name} ends at byte {At}, the file has {f.Length}");
            return t;
        }

        /// <summary>A weight matrix: fp32 in v0/v1, int8 + per-group fp32 scales in v2.</summary>
        public SourceTensor Weight(string name, params long[] shape)
        {
            if (groupSize == 0) return F32(name, shape);
            long n = shape[0] * shape[1];
            if (n % groupSize != 0) throw Bad(f, $"tensor {name} has {n} values, not a multiple of group_size {groupSize}");
            var t = new Q8GroupTensor { Name = name, Shape = shape, DType = SourceDType.F32, File = f, QOffset = At, ScaleOffset = At + n, GroupSize = groupSize };
            At += n + n / groupSize * 4;
            if (At > f.Length) throw Bad(f, $"truncated: tensor {name} ends at byte {At}, the file has {f.Length}");
            return t;
        }
    }

    /// <summary>A llama2.c v2 weight: int8 values, then one fp32 scale per group (groups run over the flat tensor).</summary>
    private sealed class Q8GroupTensor : SourceTensor
    {
        public required MappedFile File { get; init; }
        public required long QOffset { get; init; }
        public required long ScaleOffset { get; init; }
        public required int GroupSize { get; init; }

        public override void ReadRows(long row, int count, Span<float> dst)
        {
            SourceChecks.Rows(this, row, count, dst.Length);
            long first = row * RowLength, n = count * RowLength;
            sbyte* q = (sbyte*)(File.Base + QOffset);
            byte* s = File.Base + ScaleOffset;
            for (long i = 0; i < n; i++)
            {
                long e = first + i;
                float scale = BitConverter.Int32BitsToSingle(System.Runtime.CompilerServices.Unsafe.ReadUnaligned<int>(s + e / GroupSize * 4));
                dst[(int)i] = q[e] * scale;
            }
            File.Release(QOffset + first, n);
        }
    }

    /// <summary>tokenizer.bin, else tok{vocab}.bin (llama2.c's name for custom vocabularies), beside the checkpoint.</summary>
    private static string FindTokenizer(string modelPath, int vocab)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(modelPath))!;
        foreach (string name in new[] { "tokenizer.bin", $"tok{vocab}.bin", "tokenizer.model" })
        {
            string p = System.IO.Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        throw new EdgeLlmException($"{modelPath}: no tokenizer.bin or tok{vocab}.bin beside the checkpoint (pass --tokenizer)");
    }

    private static EdgeLlmException Bad(MappedFile f, string problem) => new($"{f.Path}: llama2.c checkpoint: {problem}");

    public override void Dispose() => _file.Dispose();
}
