using System.Globalization;
using System.Text.Json;
using EdgeLlm.Model;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// Meta's original release format: <c>params.json</c>, model-parallel shards <c>consolidated.00.pth</c> …
/// <c>consolidated.NN.pth</c> (torch.save zip archives) and <c>tokenizer.model</c>. Each shard holds a slice of
/// every weight; <see cref="SourceTensor.ReadRows"/> merges the slices on the fly, reading only the rows asked for
/// (with positioned reads, so neither a shard nor a whole tensor is ever resident). Meta's RoPE already pairs
/// adjacent elements, as llama.cpp does, so q/k rows are not permuted.
/// </summary>
public sealed class MetaPthSource : CheckpointSource
{
    private readonly List<ZipArchiveReader> _shards;
    private readonly TokenizerData? _tokenizer;
    private readonly List<SourceTensor> _tensors;
    private readonly string _dir;

    public override string Format => "meta-pth";
    public override LlamaParams Params { get; }
    public override IReadOnlyList<SourceTensor> Tensors => _tensors;

    public override TokenizerData Tokenizer =>
        _tokenizer ?? throw new EdgeLlmException($"{_dir}: no tokenizer loader was given for tokenizer.model");

    /// <summary>Number of model-parallel shards (consolidated.*.pth files).</summary>
    public int ShardCount => _shards.Count;

    /// <summary>The axis tok_embeddings was split along: 1 for Llama-1/2, 0 for Llama-3 (meaningless with one shard).</summary>
    public int EmbeddingSplitAxis { get; }

    private MetaPthSource(string dir, List<ZipArchiveReader> shards, TokenizerData? tokenizer, LlamaParams p, List<SourceTensor> tensors, int embeddingAxis)
    {
        _dir = dir;
        _shards = shards;
        _tokenizer = tokenizer;
        Params = p;
        _tensors = tensors;
        EmbeddingSplitAxis = embeddingAxis;
    }

    /// <summary>
    /// Opens a Meta checkpoint directory. <paramref name="tokenizerLoader"/> turns the path of tokenizer.model into
    /// tokenizer data (it also gives the vocabulary size when params.json says -1); without it,
    /// <see cref="Tokenizer"/> throws and the vocabulary size comes from the output tensor.
    /// </summary>
    public static MetaPthSource Open(string dir, Func<string, TokenizerData>? tokenizerLoader = null)
    {
        if (!Directory.Exists(dir)) throw new EdgeLlmException($"{dir}: checkpoint directory not found");
        var hp = MetaParams.Read(Path.Combine(dir, "params.json"));
        TokenizerData? tokenizer = null;
        if (tokenizerLoader is not null)
        {
            string tokPath = Path.Combine(dir, "tokenizer.model");
            if (!File.Exists(tokPath)) throw new EdgeLlmException($"{tokPath}: tokenizer.model not found beside params.json");
            tokenizer = tokenizerLoader(tokPath);
        }

        var shards = new List<ZipArchiveReader>();
        try
        {
            foreach (string path in ShardPaths(dir)) shards.Add(ZipArchiveReader.Open(path));
            var dicts = new List<Dictionary<string, ShardSlice>>(shards.Count);
            foreach (var zip in shards) dicts.Add(ReadShard(zip));
            var (p, tensors, embAxis) = Merge(dir, hp, tokenizer, shards, dicts);
            return new MetaPthSource(dir, shards, tokenizer, p, tensors, embAxis);
        }
        catch
        {
            foreach (var z in shards) z.Dispose();
            throw;
        }
    }

    public override void Dispose()
    {
        foreach (var z in _shards) z.Dispose();
        _shards.Clear();
    }

    /// <summary>
    /// The FFN hidden size as Meta's model code computes it: int(2·4·dim/3), times ffn_dim_multiplier (truncated) if
    /// given, rounded up to a multiple of multiple_of. Llama-2-7B: 11008; Llama-2-70B (1.3, 4096): 28672.
    /// </summary>
    public static int DeriveFfnDim(int dim, int multipleOf, double? ffnDimMultiplier)
    {
        if (dim <= 0 || multipleOf <= 0) throw new ArgumentOutOfRangeException(nameof(dim), "dim and multiple_of must be positive");
        long hidden = 2L * 4 * dim / 3;
        if (ffnDimMultiplier is { } m) hidden = (long)(m * hidden);
        hidden = (hidden + multipleOf - 1) / multipleOf * multipleOf;
        if (hidden <= 0 || hidden > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(ffnDimMultiplier), $"derived FFN size {hidden} is out of range");
        return (int)hidden;
    }

    /// <summary>The GGUF name of a Meta tensor name, or null if it is not a Llama weight (rope.freqs is skipped).</summary>
    public static string? GgufName(string metaName)
    {
        switch (metaName)
        {
            case "tok_embeddings.weight": return TensorNames.TokenEmbd;
            case "norm.weight": return TensorNames.OutputNorm;
            case "output.weight": return TensorNames.Output;
        }
        if (!metaName.StartsWith("layers.", StringComparison.Ordinal)) return null;
        int dot = metaName.IndexOf('.', 7);
        if (dot < 0 || !int.TryParse(metaName.AsSpan(7, dot - 7), NumberStyles.None, CultureInfo.InvariantCulture, out int layer)) return null;
        string suffix = metaName[(dot + 1)..] switch
        {
            "attention_norm.weight" => TensorNames.AttnNorm,
            "attention.wq.weight" => TensorNames.AttnQ,
            "attention.wk.weight" => TensorNames.AttnK,
            "attention.wv.weight" => TensorNames.AttnV,
            "attention.wo.weight" => TensorNames.AttnOutput,
            "ffn_norm.weight" => TensorNames.FfnNorm,
            "feed_forward.w1.weight" => TensorNames.FfnGate,
            "feed_forward.w3.weight" => TensorNames.FfnUp,
            "feed_forward.w2.weight" => TensorNames.FfnDown,
            _ => "",
        };
        return suffix.Length == 0 ? null : TensorNames.Block(layer, suffix);
    }

    // ---------------------------------------------------------------- shards

    private static List<string> ShardPaths(string dir)
    {
        var byIndex = new SortedDictionary<int, string>();
        foreach (string path in Directory.GetFiles(dir, "consolidated.*.pth"))
        {
            string mid = Path.GetFileName(path)["consolidated.".Length..^".pth".Length];
            if (mid.Length == 0 || !int.TryParse(mid, NumberStyles.None, CultureInfo.InvariantCulture, out int i))
                throw new EdgeLlmException($"{path}: shard file name is not consolidated.NN.pth");
            if (!byIndex.TryAdd(i, path)) throw new EdgeLlmException($"{path}: shard {i} appears twice (as {Path.GetFileName(byIndex[i])})");
        }
        if (byIndex.Count == 0) throw new EdgeLlmException($"{dir}: no consolidated.NN.pth shard files");
        var list = new List<string>();
        foreach (var (i, path) in byIndex)
        {
            if (i != list.Count) throw new EdgeLlmException($"{dir}: shard consolidated.{list.Count:00}.pth is missing ({byIndex.Count} shards found, up to index {byIndex.Keys.Max()})");
            list.Add(path);
        }
        return list;
    }

    /// <summary>Parses one shard's pickle and ties every tensor to its bytes in the archive.</summary>
    private static Dictionary<string, ShardSlice> ReadShard(ZipArchiveReader zip)
    {
        ZipEntry? pkl = null;
        foreach (var e in zip.Entries)
        {
            int slash = e.Name.IndexOf('/');
            if (slash > 0 && e.Name.AsSpan(slash + 1).SequenceEqual("data.pkl"))
            {
                if (pkl is not null) throw new EdgeLlmException($"{zip.Path}: two pickles ('{pkl.Name}' and '{e.Name}'): not a torch.save archive");
                pkl = e;
            }
        }
        if (pkl is null) throw new EdgeLlmException($"{zip.Path}: no '<archive>/data.pkl' entry: not a torch.save archive");
        string prefix = pkl.Name[..^"data.pkl".Length];
        if (!zip.CheckCrc(pkl)) throw new EdgeLlmException($"{zip.Path}: zip entry '{pkl.Name}' fails its CRC-32 check (corrupt file)");
        if (zip.Find(prefix + "byteorder") is { } bo)
        {
            var text = zip.GetSpan(bo);
            if (!text.SequenceEqual("little"u8)) throw new EdgeLlmException($"{zip.Path}: byte order '{System.Text.Encoding.ASCII.GetString(text[..Math.Min(text.Length, 16)])}' is not supported (only little)");
        }

        string pklName = $"{zip.Path}:{pkl.Name}";
        var state = PickleReader.LoadStateDict(pklName, zip.GetSpan(pkl));
        var result = new Dictionary<string, ShardSlice>(StringComparer.Ordinal);
        foreach (var (name, t) in state)
        {
            string where = $"{zip.Path}: tensor '{name}'";
            if (!t.IsContiguous) throw new EdgeLlmException($"{where}: strides ({string.Join(", ", t.Stride)}) are not those of a contiguous tensor");
            var entry = zip.Find(prefix + "data/" + t.Storage.Key)
                ?? throw new EdgeLlmException($"{where}: storage '{t.Storage.Key}' has no entry '{prefix}data/{t.Storage.Key}' in the archive");
            int esize = ElementBytes(t.Storage.DType);
            if (t.Storage.Numel > entry.Size / esize || entry.Size != t.Storage.Numel * esize)
                throw new EdgeLlmException($"{where}: storage entry '{entry.Name}' has {entry.Size} bytes, expected {t.Storage.Numel} x {esize}");
            result[name] = new ShardSlice(zip, entry, t.StorageOffset * esize, t.Size, t.Storage.DType);
        }
        return result;
    }

    internal static int ElementBytes(SourceDType t) => t switch { SourceDType.F32 => 4, _ => 2 };

    // ---------------------------------------------------------------- merging and validation

    private enum Split { Rows, Columns, Replicated }

    private static (LlamaParams, List<SourceTensor>, int) Merge(string dir, MetaParams hp, TokenizerData? tok,
        List<ZipArchiveReader> shards, List<Dictionary<string, ShardSlice>> dicts)
    {
        int n = shards.Count;
        // Every shard must hold the same tensors; rope.freqs (precomputed inverse frequencies) is not a weight.
        foreach (var name in dicts[0].Keys)
        {
            if (name == "rope.freqs") continue;
            if (GgufName(name) is null) throw new EdgeLlmException($"{shards[0].Path}: unexpected tensor '{name}' (not a Llama weight)");
        }
        for (int s = 1; s < n; s++)
        {
            foreach (var name in dicts[s].Keys)
                if (!dicts[0].ContainsKey(name)) throw new EdgeLlmException($"{shards[s].Path}: tensor '{name}' is not in {Path.GetFileName(shards[0].Path)}");
            foreach (var (name, first) in dicts[0])
            {
                if (!dicts[s].TryGetValue(name, out var slice)) throw new EdgeLlmException($"{shards[s].Path}: tensor '{name}' is missing (it is in {Path.GetFileName(shards[0].Path)})");
                if (!slice.Shape.AsSpan().SequenceEqual(first.Shape) || slice.DType != first.DType)
                    throw new EdgeLlmException($"{shards[s].Path}: tensor '{name}' is {slice.DType} [{string.Join(", ", slice.Shape)}] but {first.DType} [{string.Join(", ", first.Shape)}] in {Path.GetFileName(shards[0].Path)}");
            }
        }

        int dim = hp.Dim, heads = hp.Heads, kvHeads = hp.KvHeads, headDim = dim / heads;
        // The vocabulary: params.json, else the tokenizer, else the output matrix (always split along rows).
        var outSlice = Slice(dicts, shards, "output.weight", 0);
        long tensorVocab = outSlice.Shape.Length == 2 ? outSlice.Shape[0] * n : -1;
        int vocab = hp.VocabSize > 0 ? hp.VocabSize : tok is not null ? tok.Tokens.Length : (int)Math.Min(int.MaxValue, tensorVocab);
        if (tok is not null && tok.Tokens.Length != vocab)
            throw new EdgeLlmException($"{dir}: tokenizer.model has {tok.Tokens.Length} pieces but params.json says vocab_size {vocab}");
        if (tensorVocab != vocab)
            throw new EdgeLlmException($"{dir}: the vocabulary size is {vocab} ({(hp.VocabSize > 0 ? "params.json" : "tokenizer.model pieces")}) but output.weight has {tensorVocab} rows");

        int ffn = DeriveFfnDim(dim, hp.MultipleOf, hp.FfnDimMultiplier);
        long w1Rows = hp.Layers == 0 ? ffn : Slice(dicts, shards, "layers.0.feed_forward.w1.weight", 0).Shape[0] * n;
        if (w1Rows != ffn)
            throw new EdgeLlmException($"{dir}: FFN size derived from params.json (dim {dim}, multiple_of {hp.MultipleOf}, ffn_dim_multiplier {hp.FfnDimMultiplier?.ToString(CultureInfo.InvariantCulture) ?? "none"}) is {ffn} but layers.0.feed_forward.w1 has {w1Rows} rows");

        // tok_embeddings: ParallelEmbedding splits columns (Llama-1/2); Llama-3 splits rows. Decide from the shapes.
        var emb = Slice(dicts, shards, "tok_embeddings.weight", 0).Shape;
        Split embSplit = Split.Rows;
        int embAxis = 0;
        if (n > 1 && emb.Length == 2)
        {
            if (emb[0] == vocab && emb[1] * n == dim) { embSplit = Split.Columns; embAxis = 1; }
            else if (emb[0] * n == vocab && emb[1] == dim) { embSplit = Split.Rows; embAxis = 0; }
            else throw new EdgeLlmException($"{shards[0].Path}: tensor 'tok_embeddings.weight' shard shape [{string.Join(", ", emb)}] is neither [vocab {vocab}, dim {dim}/{n}] nor [vocab {vocab}/{n}, dim {dim}]");
        }

        var tensors = new List<SourceTensor>();
        void Add(string meta, Split split, params long[] shape) => tensors.Add(MakeTensor(dicts, shards, meta, split, shape));

        Add("tok_embeddings.weight", embSplit, vocab, dim);
        for (int l = 0; l < hp.Layers; l++)
        {
            string p = $"layers.{l}.";
            Add(p + "attention_norm.weight", Split.Replicated, dim);
            Add(p + "attention.wq.weight", Split.Rows, heads * headDim, dim);
            Add(p + "attention.wk.weight", Split.Rows, kvHeads * headDim, dim);
            Add(p + "attention.wv.weight", Split.Rows, kvHeads * headDim, dim);
            Add(p + "attention.wo.weight", Split.Columns, dim, heads * headDim);
            Add(p + "ffn_norm.weight", Split.Replicated, dim);
            Add(p + "feed_forward.w1.weight", Split.Rows, ffn, dim);
            Add(p + "feed_forward.w2.weight", Split.Columns, dim, ffn);
            Add(p + "feed_forward.w3.weight", Split.Rows, ffn, dim);
        }
        Add("norm.weight", Split.Replicated, dim);
        Add("output.weight", Split.Rows, vocab, dim);

        // Nothing left over: every tensor in the shards is a layer below n_layers (or rope.freqs).
        int expected = 3 + 9 * hp.Layers + (dicts[0].ContainsKey("rope.freqs") ? 1 : 0);
        if (dicts[0].Count != expected)
        {
            foreach (var name in dicts[0].Keys)
                if (name != "rope.freqs" && !tensors.Exists(t => ((MergedTensor)t).MetaName == name))
                    throw new EdgeLlmException($"{shards[0].Path}: tensor '{name}' is beyond n_layers {hp.Layers} in params.json");
        }

        var p2 = new LlamaParams
        {
            Shape = new ModelShape
            {
                Dim = dim, Layers = hp.Layers, Heads = heads, KvHeads = kvHeads, Ffn = ffn, Vocab = vocab,
                RmsEps = hp.NormEps, RopeBase = hp.RopeTheta, Context = hp.ContextLength,
            },
            RopeFreqFactors = hp.UseScaledRope ? Llama31RopeFactors(headDim, hp.RopeTheta, hp.RopeScalingFactor, hp.HighFreqFactor) : null,
            Name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))),
        };
        return (p2, tensors, embAxis);
    }

    private static ShardSlice Slice(List<Dictionary<string, ShardSlice>> dicts, List<ZipArchiveReader> shards, string meta, int s) =>
        dicts[s].TryGetValue(meta, out var slice) ? slice : throw new EdgeLlmException($"{shards[s].Path}: tensor '{meta}' is missing");

    private static MergedTensor MakeTensor(List<Dictionary<string, ShardSlice>> dicts, List<ZipArchiveReader> shards, string meta, Split split, long[] shape)
    {
        int n = shards.Count;
        var parts = new ShardSlice[split == Split.Replicated ? 1 : n];
        var first = Slice(dicts, shards, meta, 0);
        // The per-shard shape that merges to the expected shape.
        var want = (long[])shape.Clone();
        if (split == Split.Rows) want[0] = shape[0] % n == 0 ? shape[0] / n : -1;
        if (split == Split.Columns) want[1] = shape[1] % n == 0 ? shape[1] / n : -1;
        for (int s = 0; s < n; s++)
        {
            var slice = Slice(dicts, shards, meta, s);
            if (!slice.Shape.AsSpan().SequenceEqual(want))
            {
                string how = split switch { Split.Rows => $"rows of {n} shards concatenated", Split.Columns => $"columns of {n} shards concatenated", _ => "replicated in every shard" };
                string per = Array.IndexOf(want, -1L) >= 0 ? $"which cannot be cut into {n} shards" : $"i.e. [{string.Join(", ", want)}] per shard ({how})";
                throw new EdgeLlmException($"{shards[s].Path}: tensor '{meta}' has shape [{string.Join(", ", slice.Shape)}] in this shard; params.json needs [{string.Join(", ", shape)}], {per}");
            }
            if (s < parts.Length) parts[s] = slice;
        }
        return new MergedTensor(parts, split == Split.Columns)
        {
            Name = GgufName(meta)!,
            MetaName = meta,
            Shape = shape,
            DType = first.DType,
        };
    }

    /// <summary>
    /// Llama-3.1 rope frequency factors, as llama.cpp writes them to rope_freqs: 1 for short wavelengths,
    /// the scale factor for long ones, a smooth blend between (Meta's apply_scaling, original context 8192).
    /// </summary>
    public static float[] Llama31RopeFactors(int headDim, float theta, float scaleFactor = 8f, float highFreqFactor = 4f, float lowFreqFactor = 1f, int oldContext = 8192) =>
        highFreqFactor == lowFreqFactor
            ? throw new EdgeLlmException($"params.json: high_freq_factor {highFreqFactor} equals low_freq_factor (no blend between them)")
            : Llama3Rope.Factors(headDim, theta, scaleFactor, lowFreqFactor, highFreqFactor, oldContext);

    // ---------------------------------------------------------------- params.json

    /// <summary>The fields of params.json this converter uses.</summary>
    internal sealed record MetaParams
    {
        public int Dim, Layers, Heads, KvHeads, VocabSize, MultipleOf, ContextLength;
        public double? FfnDimMultiplier;
        public float NormEps, RopeTheta, RopeScalingFactor, HighFreqFactor;
        public bool UseScaledRope;

        public static MetaParams Read(string path)
        {
            if (!File.Exists(path)) throw new EdgeLlmException($"{path}: params.json not found");
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(File.ReadAllBytes(path));
            }
            catch (JsonException e)
            {
                throw new EdgeLlmException($"{path}: invalid JSON: {e.Message.Split('\n')[0]}");
            }
            using (doc)
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new EdgeLlmException($"{path}: params.json is not a JSON object");
                var hp = new MetaParams
                {
                    Dim = Int(root, path, "dim", null),
                    Layers = Int(root, path, "n_layers", null),
                    Heads = Int(root, path, "n_heads", null),
                    VocabSize = Int(root, path, "vocab_size", -1),
                    MultipleOf = Int(root, path, "multiple_of", 256),
                    FfnDimMultiplier = Num(root, path, "ffn_dim_multiplier"),
                    NormEps = (float)(Num(root, path, "norm_eps") ?? 1e-5),
                    RopeTheta = (float)(Num(root, path, "rope_theta") ?? 10000),
                    UseScaledRope = Bool(root, path, "use_scaled_rope"),
                    RopeScalingFactor = (float)(Num(root, path, "rope_scaling_factor") ?? 8),
                    HighFreqFactor = (float)(Num(root, path, "high_freq_factor") ?? 4),
                };
                hp.KvHeads = Int(root, path, "n_kv_heads", hp.Heads);
                hp.ContextLength = Int(root, path, "max_seq_len", GuessContext(hp));
                if (hp.Dim <= 0 || hp.Layers < 0 || hp.Heads <= 0 || hp.KvHeads <= 0 || hp.MultipleOf <= 0)
                    throw new EdgeLlmException($"{path}: dim, n_layers, n_heads, n_kv_heads and multiple_of must be positive");
                if (hp.Dim % hp.Heads != 0 || (hp.Dim / hp.Heads) % 2 != 0)
                    throw new EdgeLlmException($"{path}: dim {hp.Dim} is not n_heads {hp.Heads} times an even head size");
                if (hp.Heads % hp.KvHeads != 0) throw new EdgeLlmException($"{path}: n_heads {hp.Heads} is not a multiple of n_kv_heads {hp.KvHeads}");
                if (hp.VocabSize == 0 || hp.VocabSize < -1) throw new EdgeLlmException($"{path}: vocab_size {hp.VocabSize} is neither positive nor -1");
                if (hp.FfnDimMultiplier is <= 0) throw new EdgeLlmException($"{path}: ffn_dim_multiplier must be positive");
                if (!(hp.NormEps > 0) || !(hp.RopeTheta > 0)) throw new EdgeLlmException($"{path}: norm_eps and rope_theta must be positive");
                return hp;
            }
        }

        /// <summary>params.json has no context length; guess it from the release, as llama.cpp does.</summary>
        private static int GuessContext(MetaParams hp) =>
            hp.UseScaledRope ? 131072          // Llama-3.1
            : hp.RopeTheta == 500000f ? 8192    // Llama-3
            : hp.RopeTheta == 1000000f ? 16384  // Code Llama
            : hp.NormEps == 1e-5f ? 4096        // Llama-2
            : 2048;                             // Llama-1

        private static int Int(JsonElement root, string path, string key, int? fallback)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null)
                return fallback ?? throw new EdgeLlmException($"{path}: required key '{key}' is missing");
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i)) throw new EdgeLlmException($"{path}: '{key}' is not an integer");
            return i;
        }

        private static double? Num(JsonElement root, string path, string key)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind != JsonValueKind.Number) throw new EdgeLlmException($"{path}: '{key}' is not a number");
            double d = v.GetDouble();
            if (!double.IsFinite(d)) throw new EdgeLlmException($"{path}: '{key}' is not finite");
            return d;
        }

        private static bool Bool(JsonElement root, string path, string key)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return false;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new EdgeLlmException($"{path}: '{key}' is not a boolean"),
            };
        }
    }
}
