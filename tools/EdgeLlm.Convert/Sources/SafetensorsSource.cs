using System.Text.Json;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// A Hugging Face Llama checkpoint directory: <c>config.json</c>, one or many <c>*.safetensors</c> (listed by
/// <c>model.safetensors.index.json</c> when sharded) holding F32/F16/BF16 tensors, and a tokenizer
/// (<c>tokenizer.model</c> or <c>tokenizer.json</c>, plus <c>tokenizer_config.json</c>). Tensors are renamed to
/// llama.cpp's names and read straight from the mapped files; q_proj/k_proj rows are un-permuted from HF's
/// rotate-half order as they are read. With no <c>lm_head.weight</c> the output is tied to the embedding and no
/// <c>output.weight</c> is written (llama.cpp then uses <c>token_embd</c>).
/// </summary>
public sealed class SafetensorsSource : CheckpointSource
{
    private readonly List<SafetensorsFile> _files;
    private readonly Lazy<TokenizerData> _tokenizer;

    public override string Format => "Hugging Face safetensors";
    public override LlamaParams Params { get; }
    public override TokenizerData Tokenizer => _tokenizer.Value;
    public override IReadOnlyList<SourceTensor> Tensors { get; }

    private SafetensorsSource(List<SafetensorsFile> files, LlamaParams p, List<SourceTensor> tensors, Func<TokenizerData> tokenizer)
    {
        _files = files;
        Params = p;
        Tensors = tensors;
        _tokenizer = new Lazy<TokenizerData>(tokenizer);
    }

    public static bool IsCheckpointDir(string path) => Directory.Exists(path) && File.Exists(System.IO.Path.Combine(path, "config.json"));

    public static SafetensorsSource Open(string dir)
    {
        string name = System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(dir)));
        var config = HfConfig.Load(System.IO.Path.Combine(dir, "config.json"), name);
        var files = new List<SafetensorsFile>();
        try
        {
            foreach (string f in ShardFiles(dir)) files.Add(SafetensorsFile.Open(f));
            var tensors = MapTensors(files, config);
            return new SafetensorsSource(files, config.Params, tensors, () => TokenizerLoader.FromHfDirectory(dir, config));
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    /// <summary>The shard files: those named by the index's weight_map, else every *.safetensors in the directory.</summary>
    private static List<string> ShardFiles(string dir)
    {
        string index = System.IO.Path.Combine(dir, "model.safetensors.index.json");
        var result = new List<string>();
        if (File.Exists(index))
        {
            using var j = JsonFile.Open(index);
            if (!j.Root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw j.Error("weight_map", "is missing or not an object");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                string? file = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : null;
                if (string.IsNullOrEmpty(file) || file.Contains('/') || file.Contains('\\') || file.Contains(".."))
                    throw j.Error("weight_map", $"entry '{p.Name}' names an invalid file {p.Value}");
                if (seen.Add(file)) result.Add(System.IO.Path.Combine(dir, file));
            }
            foreach (string f in result)
                if (!File.Exists(f)) throw new FileNotFoundException($"{f}: shard listed in {index} is missing", f);
        }
        else
        {
            result.AddRange(Directory.GetFiles(dir, "*.safetensors"));
            result.Sort(StringComparer.Ordinal);
        }
        if (result.Count == 0)
        {
            string hint = File.Exists(System.IO.Path.Combine(dir, "pytorch_model.bin")) || Directory.GetFiles(dir, "pytorch_model*.bin").Length > 0
                ? " (PyTorch pytorch_model*.bin checkpoints are not supported: use the safetensors release)" : "";
            throw new EdgeLlmException($"{dir}: no *.safetensors files{hint}");
        }
        return result;
    }

    private static unsafe List<SourceTensor> MapTensors(List<SafetensorsFile> files, HfConfig config)
    {
        var p = config.Params;
        var tensors = new List<SourceTensor>();
        foreach (var file in files)
        {
            foreach (var e in file.Entries)
            {
                if (e.Name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) continue; // recomputed by llama.cpp
                var (gguf, ropeHeads) = MapName(e.Name, p)
                    ?? throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' is not part of a llama model (unsupported checkpoint)");
                var dtype = SafetensorsFile.ToSourceDType(e.DType)
                    ?? throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' has dtype {e.DType} (F32, F16 or BF16 expected)");
                if (e.Shape.Length == 0 || Array.IndexOf(e.Shape, 0L) >= 0)
                    throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' has an empty shape [{string.Join(", ", e.Shape)}]");
                if (ropeHeads > 0 && (e.Shape.Length != 2 || e.Shape[0] % (2L * ropeHeads) != 0))
                    throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' shape [{string.Join(", ", e.Shape)}] cannot hold {ropeHeads} heads of even size");
                tensors.Add(new MappedTensor
                {
                    Name = gguf,
                    Shape = e.Shape,
                    DType = dtype,
                    File = file.File,
                    Offset = file.DataStart + e.Begin,
                    RopeHeads = ropeHeads,
                });
            }
        }
        return LlamaLayout.Order(tensors, t => t.Name, p.Layers);
    }

    /// <summary>HF LlamaForCausalLM name -> (GGUF name, heads to un-permute over or 0), or null if unknown.</summary>
    internal static (string Name, int RopeHeads)? MapName(string hf, LlamaParams p)
    {
        switch (hf)
        {
            case "model.embed_tokens.weight": return (LlamaLayout.TokenEmbd, 0);
            case "model.norm.weight": return (LlamaLayout.OutputNorm, 0);
            case "lm_head.weight": return (LlamaLayout.Output, 0);
        }
        const string prefix = "model.layers.";
        if (!hf.StartsWith(prefix, StringComparison.Ordinal)) return null;
        int dot = hf.IndexOf('.', prefix.Length);
        if (dot < 0 || !int.TryParse(hf.AsSpan(prefix.Length, dot - prefix.Length), System.Globalization.NumberStyles.None, null, out int layer)
            || layer >= p.Layers)
            return null;
        string blk = $"blk.{layer}.";
        return hf[(dot + 1)..] switch
        {
            "input_layernorm.weight" => (blk + "attn_norm.weight", 0),
            "self_attn.q_proj.weight" => (blk + "attn_q.weight", p.Heads),
            "self_attn.k_proj.weight" => (blk + "attn_k.weight", p.KvHeads),
            "self_attn.v_proj.weight" => (blk + "attn_v.weight", 0),
            "self_attn.o_proj.weight" => (blk + "attn_output.weight", 0),
            "post_attention_layernorm.weight" => (blk + "ffn_norm.weight", 0),
            "mlp.gate_proj.weight" => (blk + "ffn_gate.weight", 0),
            "mlp.up_proj.weight" => (blk + "ffn_up.weight", 0),
            "mlp.down_proj.weight" => (blk + "ffn_down.weight", 0),
            _ => null,
        };
    }

    public override void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
