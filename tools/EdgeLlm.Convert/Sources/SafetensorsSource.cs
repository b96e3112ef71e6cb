using System.Text.Json;
using EdgeLlm.Model;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// A Hugging Face checkpoint directory (Llama/Mistral/SmolLM, Qwen2, Qwen3, Phi-3, Gemma 1/2/3; see
/// <see cref="HfConfig"/>): <c>config.json</c>, one or many <c>*.safetensors</c> (listed by
/// <c>model.safetensors.index.json</c> when sharded) holding F32/F16/BF16 tensors, and a tokenizer
/// (<c>tokenizer.model</c> or <c>tokenizer.json</c>, plus <c>tokenizer_config.json</c>). Tensors are renamed to
/// llama.cpp's names and read straight from the mapped files, transformed as llama.cpp's converter does while
/// they are read: llama's q_proj/k_proj rows un-permuted from HF's rotate-half order (the NEOX-rope families
/// keep theirs), Gemma's norm weights stored as 1 + w, Gemma 3's embedding cut to the tokenizer's vocabulary.
/// Fused tensors (Phi-3's qkv_proj and gate_up_proj) are written as they are (attn_qkv, ffn_up). With tied
/// embeddings (no <c>lm_head.weight</c>, or tie_word_embeddings) no <c>output.weight</c> is written
/// (llama.cpp then uses <c>token_embd</c>).
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

    public static SafetensorsSource Open(string dir)
    {
        string name = System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(dir)));
        var config = HfConfig.Load(System.IO.Path.Combine(dir, "config.json"), name);
        var files = new List<SafetensorsFile>();
        try
        {
            foreach (string f in ShardFiles(dir)) files.Add(SafetensorsFile.Open(f));
            Func<TokenizerData> tokenizer = () => LoadTokenizer(dir, config);
            if (config.Family == HfFamily.Gemma3)
            {
                // llama.cpp drops the embedding rows past the tokenizer's vocabulary (gemma3's padding rows).
                var tok = LoadTokenizer(dir, config with { Params = config.Params with { Shape = config.Params.Shape with { Vocab = -1 } } });
                if (tok.Tokens.Length < config.Params.Shape.Vocab)
                    config = config with { Params = config.Params with { Shape = config.Params.Shape with { Vocab = tok.Tokens.Length } } };
                tokenizer = () => tok;
            }
            var tensors = MapTensors(files, config);
            return new SafetensorsSource(files, config.Params, tensors, tokenizer);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    /// <summary>The checkpoint's tokenizer; Gemma's SentencePiece vocabularies get add_space_prefix = false, as llama.cpp writes.</summary>
    private static TokenizerData LoadTokenizer(string dir, HfConfig config)
    {
        var tok = TokenizerLoader.FromHfDirectory(dir, config);
        return config.IsGemma && tok.Model == "llama" ? tok with { AddSpacePrefix = false } : tok;
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
                // Tied output: the head is the embedding (llama.cpp then reads token_embd); gemma's converter drops lm_head always.
                if (e.Name == "lm_head.weight" && (config.TieWordEmbeddings || config.IsGemma)) continue;
                var (gguf, ropeHeads) = MapName(e.Name, config)
                    ?? throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' is not part of a {HfConfig.ArchitectureName(config.Family)} model (unsupported checkpoint)");
                var dtype = SafetensorsFile.ToSourceDType(e.DType)
                    ?? throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' has dtype {e.DType} (F32, F16 or BF16 expected)");
                if (e.Shape.Length == 0 || Array.IndexOf(e.Shape, 0L) >= 0)
                    throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' has an empty shape [{string.Join(", ", e.Shape)}]");
                if (ropeHeads > 0 && (e.Shape.Length != 2 || e.Shape[0] % (2L * ropeHeads) != 0))
                    throw new EdgeLlmException($"{file.File.Path}: tensor '{e.Name}' shape [{string.Join(", ", e.Shape)}] cannot hold {ropeHeads} heads of even size");
                var shape = e.Shape;
                if (gguf == TensorNames.TokenEmbd && shape.Length == 2 && shape[0] > p.Shape.Vocab && config.Family == HfFamily.Gemma3)
                    shape = [p.Shape.Vocab, shape[1]]; // the leading rows: the vocabulary's
                tensors.Add(new MappedTensor
                {
                    Name = gguf,
                    Shape = shape,
                    DType = dtype,
                    File = file.File,
                    Offset = file.DataStart + e.Begin,
                    RopeHeads = ropeHeads,
                    Shift = gguf.EndsWith("norm.weight", StringComparison.Ordinal) ? config.NormShift : 0f,
                });
            }
        }
        return LlamaLayout.Order(tensors, t => t.Name, p.Shape.Layers, p.Shape.Arch);
    }

    /// <summary>HF LlamaForCausalLM name -> (GGUF name, heads to un-permute over or 0), or null if unknown.</summary>
    internal static (string Name, int RopeHeads)? MapName(string hf, LlamaParams p) =>
        MapName(hf, new HfConfig { Params = p, Family = HfFamily.Llama, TieWordEmbeddings = false });

    /// <summary>HF name -> (GGUF name, heads to un-permute over or 0), as llama.cpp's tensor map names them; null if unknown.</summary>
    internal static (string Name, int RopeHeads)? MapName(string hf, HfConfig config)
    {
        var p = config.Params;
        switch (hf)
        {
            case "model.embed_tokens.weight": return (TensorNames.TokenEmbd, 0);
            case "model.norm.weight": return (TensorNames.OutputNorm, 0);
            case "lm_head.weight": return (TensorNames.Output, 0);
        }
        const string prefix = "model.layers.";
        if (!hf.StartsWith(prefix, StringComparison.Ordinal)) return null;
        int dot = hf.IndexOf('.', prefix.Length);
        if (dot < 0 || !int.TryParse(hf.AsSpan(prefix.Length, dot - prefix.Length), System.Globalization.NumberStyles.None, null, out int layer)
            || layer >= p.Shape.Layers)
            return null;
        string blk = TensorNames.BlockPrefix(layer);
        bool permute = config.PermuteQk;
        bool sandwich = config.Family is HfFamily.Gemma2 or HfFamily.Gemma3; // norms before and after attention and FFN
        string? suffix = hf[(dot + 1)..] switch
        {
            "input_layernorm.weight" => TensorNames.AttnNorm,
            "self_attn.q_proj.weight" => TensorNames.AttnQ,
            "self_attn.k_proj.weight" => TensorNames.AttnK,
            "self_attn.v_proj.weight" => TensorNames.AttnV,
            "self_attn.q_proj.bias" => TensorNames.AttnQBias,
            "self_attn.k_proj.bias" => TensorNames.AttnKBias,
            "self_attn.v_proj.bias" => TensorNames.AttnVBias,
            "self_attn.qkv_proj.weight" => TensorNames.AttnQkv,
            "self_attn.o_proj.weight" => TensorNames.AttnOutput,
            "self_attn.q_norm.weight" => TensorNames.AttnQNorm,
            "self_attn.k_norm.weight" => TensorNames.AttnKNorm,
            "post_attention_layernorm.weight" => sandwich ? TensorNames.PostAttnNorm : TensorNames.FfnNorm,
            "pre_feedforward_layernorm.weight" => sandwich ? TensorNames.FfnNorm : null,
            "post_feedforward_layernorm.weight" => sandwich ? TensorNames.PostFfwNorm : null,
            "mlp.gate_proj.weight" => TensorNames.FfnGate,
            "mlp.up_proj.weight" => TensorNames.FfnUp,
            "mlp.gate_up_proj.weight" => TensorNames.FfnUp,
            "mlp.down_proj.weight" => TensorNames.FfnDown,
            _ => null,
        };
        if (suffix is null) return null;
        int heads = !permute ? 0 : suffix switch { TensorNames.AttnQ => p.Shape.Heads, TensorNames.AttnK => p.Shape.KvHeads, _ => 0 };
        return (blk + suffix, heads);
    }

    public override void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
