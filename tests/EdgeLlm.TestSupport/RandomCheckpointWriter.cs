using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Model;

namespace EdgeLlm.TestSupport;

/// <summary>A random Llama checkpoint: its params.json numbers (the model is <see cref="Shape"/>), seed and format quirks.</summary>
public sealed record RandomCheckpointSpec
{
    public required int Dim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int VocabSize { get; init; }
    public int MultipleOf { get; init; } = 256;
    public double? FfnDimMultiplier { get; init; }
    public float NormEps { get; init; } = 1e-5f;
    public float RopeTheta { get; init; } = 10000f;
    public ulong Seed { get; init; } = 1;

    /// <summary>Llama-3 style: tok_embeddings split along rows (dim 0) across Meta shards instead of columns.</summary>
    public bool EmbeddingsSplitRows { get; init; }

    /// <summary>Write rope.freqs into Meta shards, as Llama-2's consolidated files have (readers must skip it).</summary>
    public bool WriteRopeFreqs { get; init; } = true;

    /// <summary>Write vocab_size -1 into params.json (as Llama-1/2 do: the tokenizer gives it).</summary>
    public bool VocabFromTokenizer { get; init; }

    public int HeadDim => Dim / Heads;

    /// <summary>FFN size as Meta's code derives it from dim, multiple_of and ffn_dim_multiplier.</summary>
    public int FfnDim => MetaPthSource.DeriveFfnDim(Dim, MultipleOf, FfnDimMultiplier);

    /// <summary>The model the checkpoint holds (its tensors' names and sizes).</summary>
    public ModelShape Shape => new()
    {
        Dim = Dim, Layers = Layers, Heads = Heads, KvHeads = KvHeads, Ffn = FfnDim, Vocab = VocabSize, RmsEps = NormEps, RopeBase = RopeTheta,
    };
}

/// <summary>
/// One logical tensor of a random checkpoint (GGUF name, llama.cpp layout), with the names and the Meta split
/// axis it has in the other formats.
/// </summary>
public sealed record RandomTensor(string GgufName, string MetaName, string HfName, long[] Shape, MetaSplit Split, int RotateHalfHeads)
{
    public long Rows => Shape[0];
    public long Cols => Shape.Length > 1 ? Shape[1] : 1;
}

/// <summary>How a tensor is cut across Meta model-parallel shards.</summary>
public enum MetaSplit { Rows, Columns, Replicated }

/// <summary>
/// Writes a seeded random Llama checkpoint as Meta's original format (params.json + N consolidated.XX.pth
/// torch.save archives, split along the model-parallel axes) or as Hugging Face safetensors (sharded, with an
/// index and config.json, q/k rows permuted to rotate-half order). Every value is a pure function of
/// (seed, tensor, row, column) (<see cref="Value"/>), exactly representable in bf16, so tests can check what a
/// reader returns without keeping the tensors; writing streams row by row, so 70B-shaped layers need little memory.
/// </summary>
public static class RandomCheckpointWriter
{
    /// <summary>The tensors of the checkpoint in GGUF order, llama.cpp layout (Meta's, i.e. no rotate-half).</summary>
    public static List<RandomTensor> Tensors(RandomCheckpointSpec spec)
    {
        var shape = spec.Shape;
        RandomTensor T(string gguf, string meta, string hf, MetaSplit split, int rotateHalfHeads = 0)
        {
            var dims = shape.Dims(gguf)!;
            Array.Reverse(dims); // PyTorch order
            return new(gguf, meta, hf, dims, split, rotateHalfHeads);
        }
        var list = new List<RandomTensor>
        {
            T(TensorNames.TokenEmbd, "tok_embeddings.weight", "model.embed_tokens.weight", spec.EmbeddingsSplitRows ? MetaSplit.Rows : MetaSplit.Columns),
        };
        for (int l = 0; l < spec.Layers; l++)
        {
            string b = TensorNames.BlockPrefix(l), m = $"layers.{l}.", h = $"model.layers.{l}.";
            list.Add(T(b + TensorNames.AttnNorm, m + "attention_norm.weight", h + "input_layernorm.weight", MetaSplit.Replicated));
            list.Add(T(b + TensorNames.AttnQ, m + "attention.wq.weight", h + "self_attn.q_proj.weight", MetaSplit.Rows, spec.Heads));
            list.Add(T(b + TensorNames.AttnK, m + "attention.wk.weight", h + "self_attn.k_proj.weight", MetaSplit.Rows, spec.KvHeads));
            list.Add(T(b + TensorNames.AttnV, m + "attention.wv.weight", h + "self_attn.v_proj.weight", MetaSplit.Rows));
            list.Add(T(b + TensorNames.AttnOutput, m + "attention.wo.weight", h + "self_attn.o_proj.weight", MetaSplit.Columns));
            list.Add(T(b + TensorNames.FfnNorm, m + "ffn_norm.weight", h + "post_attention_layernorm.weight", MetaSplit.Replicated));
            list.Add(T(b + TensorNames.FfnGate, m + "feed_forward.w1.weight", h + "mlp.gate_proj.weight", MetaSplit.Rows));
            list.Add(T(b + TensorNames.FfnDown, m + "feed_forward.w2.weight", h + "mlp.down_proj.weight", MetaSplit.Columns));
            list.Add(T(b + TensorNames.FfnUp, m + "feed_forward.w3.weight", h + "mlp.up_proj.weight", MetaSplit.Rows));
        }
        list.Add(T(TensorNames.OutputNorm, "norm.weight", "model.norm.weight", MetaSplit.Replicated));
        list.Add(T(TensorNames.Output, "output.weight", "lm_head.weight", MetaSplit.Rows));
        return list;
    }

    /// <summary>
    /// The value of element (row, col) of a tensor (by GGUF name, llama.cpp layout): weights uniform in
    /// ±0.05, norm weights in 1 ± 0.1, truncated to bf16 so that bf16 storage holds it exactly.
    /// </summary>
    public static float Value(RandomCheckpointSpec spec, string ggufName, long row, long col)
    {
        var t = Tensors(spec).Find(x => x.GgufName == ggufName) ?? throw new ArgumentException($"no tensor '{ggufName}'", nameof(ggufName));
        return BitConverter.UInt32BitsToSingle((uint)Bits(TensorKey(spec.Seed, ggufName), IsNorm(t), row * t.Cols + col) << 16);
    }

    /// <summary>Fills dst with rows [row, row + count) of a tensor (llama.cpp layout), as floats.</summary>
    public static void ExpectedRows(RandomCheckpointSpec spec, RandomTensor t, long row, int count, Span<float> dst)
    {
        ulong key = TensorKey(spec.Seed, t.GgufName);
        bool norm = IsNorm(t);
        long cols = t.Cols;
        for (long r = 0; r < count; r++)
            for (long c = 0; c < cols; c++)
                dst[(int)(r * cols + c)] = BitConverter.UInt32BitsToSingle((uint)Bits(key, norm, (row + r) * cols + c) << 16);
    }

    private static bool IsNorm(RandomTensor t) => t.Shape.Length == 1;

    private static ulong TensorKey(ulong seed, string name)
    {
        ulong h = 14695981039346656037UL; // FNV-1a, stable across runs (string.GetHashCode is not)
        foreach (char c in name) { h ^= c; h *= 1099511628211UL; }
        return Mix(h ^ Mix(seed));
    }

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>bf16 bits of element <paramref name="index"/> (row-major) of a tensor.</summary>
    private static ushort Bits(ulong key, bool norm, long index)
    {
        ulong z = Mix(key + (ulong)index * 0x9E3779B97F4A7C15UL);
        float u = (z >> 40) * (1f / (1 << 24)) * 2f - 1f; // [-1, 1)
        float v = norm ? 1f + 0.1f * u : 0.05f * u;
        return (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16);
    }

    // ---------------------------------------------------------------- Meta format

    /// <summary>
    /// Writes params.json and <paramref name="shards"/> files consolidated.XX.pth (bf16 storages) into dir.
    /// Column-parallel tensors are cut along rows, row-parallel ones (wo, w2, and tok_embeddings unless
    /// <see cref="RandomCheckpointSpec.EmbeddingsSplitRows"/>) along columns, norms replicated.
    /// </summary>
    public static void WriteMeta(RandomCheckpointSpec spec, string dir, int shards, bool forceZip64 = false, string archiveName = "archive")
    {
        var tensors = Tensors(spec);
        foreach (var t in tensors)
        {
            long along = t.Split switch { MetaSplit.Rows => t.Rows, MetaSplit.Columns => t.Cols, _ => shards };
            if (along % shards != 0) throw new ArgumentException($"{t.MetaName} [{string.Join(", ", t.Shape)}] cannot be split into {shards} shards", nameof(shards));
        }
        Directory.CreateDirectory(dir);
        WriteParamsJson(spec, Path.Combine(dir, "params.json"));
        for (int s = 0; s < shards; s++)
            WriteMetaShard(spec, tensors, Path.Combine(dir, $"consolidated.{s:00}.pth"), s, shards, forceZip64, archiveName);
    }

    private static void WriteParamsJson(RandomCheckpointSpec spec, string path)
    {
        using var fs = File.Create(path);
        using var j = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = false });
        j.WriteStartObject();
        j.WriteNumber("dim", spec.Dim);
        j.WriteNumber("multiple_of", spec.MultipleOf);
        if (spec.FfnDimMultiplier is { } m) j.WriteNumber("ffn_dim_multiplier", m);
        j.WriteNumber("n_heads", spec.Heads);
        if (spec.KvHeads != spec.Heads) j.WriteNumber("n_kv_heads", spec.KvHeads);
        j.WriteNumber("n_layers", spec.Layers);
        j.WriteNumber("norm_eps", spec.NormEps);
        if (spec.RopeTheta != 10000f) j.WriteNumber("rope_theta", spec.RopeTheta);
        j.WriteNumber("vocab_size", spec.VocabFromTokenizer ? -1 : spec.VocabSize);
        j.WriteEndObject();
    }

    private static void WriteMetaShard(RandomCheckpointSpec spec, List<RandomTensor> tensors, string path, int shard, int shards, bool forceZip64, string archive)
    {
        var pickled = new List<PickledTensor>();
        var slices = new List<(RandomTensor T, long Row0, long Rows, long Col0, long Cols)>();
        foreach (var t in tensors)
        {
            long rows = t.Rows, cols = t.Cols, row0 = 0, col0 = 0;
            if (t.Split == MetaSplit.Rows) { rows /= shards; row0 = shard * rows; }
            if (t.Split == MetaSplit.Columns) { cols /= shards; col0 = shard * cols; }
            long[] shape = t.Shape.Length == 1 ? [rows] : [rows, cols];
            pickled.Add(new PickledTensor(t.MetaName, pickled.Count.ToString(CultureInfo.InvariantCulture), SourceDType.BF16, shape));
            slices.Add((t, row0, rows, col0, cols));
        }
        if (spec.WriteRopeFreqs)
            pickled.Add(new PickledTensor("rope.freqs", pickled.Count.ToString(CultureInfo.InvariantCulture), SourceDType.BF16, [spec.HeadDim / 2]));

        using var zip = new ZipStoreWriter(path, forceZip64);
        zip.Add(archive + "/data.pkl", TorchPickleWriter.StateDict(pickled));
        zip.Add(archive + "/byteorder", "little"u8);
        var buffer = new ushort[1 << 19];
        for (int i = 0; i < slices.Count; i++)
        {
            var (t, row0, rows, col0, cols) = slices[i];
            zip.Begin($"{archive}/data/{pickled[i].StorageKey}", rows * cols * 2);
            ulong key = TensorKey(spec.Seed, t.GgufName);
            WriteRows(zip.Write, buffer, key, IsNorm(t), t.Cols, row0, rows, col0, cols, null);
            zip.End();
        }
        if (spec.WriteRopeFreqs)
        {
            int half = spec.HeadDim / 2;
            var freqs = new byte[half * 2];
            for (int i = 0; i < half; i++)
                BinaryPrimitives.WriteUInt16LittleEndian(freqs.AsSpan(2 * i), (ushort)(BitConverter.SingleToUInt32Bits(1f / MathF.Pow(spec.RopeTheta, 2f * i / spec.HeadDim)) >> 16));
            zip.Add($"{archive}/data/{pickled[^1].StorageKey}", freqs);
        }
        zip.Add(archive + "/version", "3\n"u8);
        zip.Finish();
    }

    /// <summary>
    /// Streams rows [row0, row0 + rows) × columns [col0, col0 + cols) of a tensor as bf16. With rowMap, output
    /// row r holds logical row rowMap(r) (HF's rotate-half order).
    /// </summary>
    private static void WriteRows(Action<ReadOnlySpan<byte>> write, ushort[] buffer, ulong key, bool norm, long fullCols,
        long row0, long rows, long col0, long cols, Func<long, long>? rowMap)
    {
        int fill = 0;
        for (long r = 0; r < rows; r++)
        {
            long logical = rowMap is null ? row0 + r : rowMap(row0 + r);
            long baseIndex = logical * fullCols + col0;
            for (long c = 0; c < cols; c++)
            {
                buffer[fill++] = Bits(key, norm, baseIndex + c);
                if (fill == buffer.Length)
                {
                    write(MemoryMarshal.AsBytes(buffer.AsSpan()));
                    fill = 0;
                }
            }
        }
        if (fill > 0) write(MemoryMarshal.AsBytes(buffer.AsSpan(0, fill)));
    }

    // ---------------------------------------------------------------- Hugging Face safetensors

    /// <summary>
    /// Writes config.json and the weights as bf16 safetensors: model.safetensors if they fit in
    /// <paramref name="maxShardBytes"/>, else model-0000i-of-0000n.safetensors files plus
    /// model.safetensors.index.json. q_proj/k_proj rows are written in HF's rotate-half order.
    /// </summary>
    public static void WriteHf(RandomCheckpointSpec spec, string dir, long maxShardBytes = 5L << 30)
    {
        var tensors = Tensors(spec);
        // HF file order: embeddings, layers, final norm, lm_head (the GGUF order, the same here).
        var files = new List<List<RandomTensor>> { new() };
        long fileBytes = 0;
        foreach (var t in tensors)
        {
            long bytes = t.Rows * t.Cols * 2;
            if (files[^1].Count > 0 && fileBytes + bytes > maxShardBytes) { files.Add(new()); fileBytes = 0; }
            files[^1].Add(t);
            fileBytes += bytes;
        }
        Directory.CreateDirectory(dir);
        WriteConfigJson(spec, Path.Combine(dir, "config.json"));
        var names = new List<string>();
        for (int f = 0; f < files.Count; f++)
            names.Add(files.Count == 1 ? "model.safetensors" : $"model-{f + 1:00000}-of-{files.Count:00000}.safetensors");
        var buffer = new ushort[1 << 19];
        long total = 0;
        for (int f = 0; f < files.Count; f++)
            total += WriteSafetensors(spec, files[f], Path.Combine(dir, names[f]), buffer);
        if (files.Count > 1)
        {
            using var fs = File.Create(Path.Combine(dir, "model.safetensors.index.json"));
            using var j = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            j.WriteStartObject();
            j.WriteStartObject("metadata");
            j.WriteNumber("total_size", total);
            j.WriteEndObject();
            j.WriteStartObject("weight_map");
            for (int f = 0; f < files.Count; f++)
                foreach (var t in files[f]) j.WriteString(t.HfName, names[f]);
            j.WriteEndObject();
            j.WriteEndObject();
        }
    }

    private static long WriteSafetensors(RandomCheckpointSpec spec, List<RandomTensor> tensors, string path, ushort[] buffer)
    {
        var header = new MemoryStream();
        long offset = 0;
        using (var j = new Utf8JsonWriter(header))
        {
            j.WriteStartObject();
            j.WriteStartObject("__metadata__");
            j.WriteString("format", "pt");
            j.WriteEndObject();
            foreach (var t in tensors)
            {
                long bytes = t.Rows * t.Cols * 2;
                j.WriteStartObject(t.HfName);
                j.WriteString("dtype", "BF16");
                j.WriteStartArray("shape");
                foreach (long d in t.Shape) j.WriteNumberValue(d);
                j.WriteEndArray();
                j.WriteStartArray("data_offsets");
                j.WriteNumberValue(offset);
                j.WriteNumberValue(offset + bytes);
                j.WriteEndArray();
                j.WriteEndObject();
                offset += bytes;
            }
            j.WriteEndObject();
        }
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(len, header.Length);
        fs.Write(len);
        fs.Write(header.GetBuffer().AsSpan(0, (int)header.Length));
        foreach (var t in tensors)
        {
            Func<long, long>? map = t.RotateHalfHeads > 0 ? RotateHalfToMeta(t.Rows, t.RotateHalfHeads) : null;
            WriteRows(fs.Write, buffer, TensorKey(spec.Seed, t.GgufName), IsNorm(t), t.Cols, 0, t.Rows, 0, t.Cols, map);
        }
        return offset;
    }

    /// <summary>
    /// HF's permutation of q/k rows (transformers' convert_llama_weights_to_hf: view(heads, hd/2, 2, dim)
    /// .transpose(1, 2)): HF row h·hd + a·hd/2 + b holds Meta row h·hd + 2b + a.
    /// </summary>
    public static Func<long, long> RotateHalfToMeta(long rows, int heads)
    {
        long hd = rows / heads, half = hd / 2;
        return r =>
        {
            long h = r / hd, within = r % hd, a = within / half, b = within % half;
            return h * hd + 2 * b + a;
        };
    }

    private static void WriteConfigJson(RandomCheckpointSpec spec, string path)
    {
        using var fs = File.Create(path);
        using var j = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
        j.WriteStartObject();
        j.WriteStartArray("architectures");
        j.WriteStringValue("LlamaForCausalLM");
        j.WriteEndArray();
        j.WriteString("model_type", "llama");
        j.WriteNumber("hidden_size", spec.Dim);
        j.WriteNumber("intermediate_size", spec.FfnDim);
        j.WriteNumber("num_attention_heads", spec.Heads);
        j.WriteNumber("num_hidden_layers", spec.Layers);
        j.WriteNumber("num_key_value_heads", spec.KvHeads);
        j.WriteNumber("rms_norm_eps", spec.NormEps);
        j.WriteNumber("rope_theta", spec.RopeTheta);
        j.WriteNumber("max_position_embeddings", 4096);
        j.WriteNumber("vocab_size", spec.VocabSize);
        j.WriteNumber("bos_token_id", 1);
        j.WriteNumber("eos_token_id", 2);
        j.WriteBoolean("tie_word_embeddings", false);
        j.WriteString("torch_dtype", "bfloat16");
        j.WriteEndObject();
    }

    internal static string Describe(RandomCheckpointSpec s) =>
        string.Create(CultureInfo.InvariantCulture, $"dim {s.Dim}, {s.Layers} layers, {s.Heads}/{s.KvHeads} heads, ffn {s.FfnDim}, vocab {s.VocabSize}");
}
