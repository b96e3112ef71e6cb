using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// A random-weight Hugging Face checkpoint of one model family, in the layout the real releases use:
/// config.json with the keys transformers writes for that class, model.safetensors with the tensor names (and
/// HF's own conventions: rotate-half q/k rows, Gemma norm weights stored as w for a (1 + w) scale, Phi-3's fused
/// qkv_proj and gate_up_proj), and a small byte-level BPE tokenizer.json. The tensors are kept in memory
/// (<see cref="Tensors"/>, HF names, float32 values exactly representable in bf16) so tests can compute what the
/// converter must write and what the model must output.
/// </summary>
internal sealed class HfFamilyCheckpoint
{
    public required string Family { get; init; }          // test label: llama3, smollm, mistral, qwen2, qwen3, phi3, gemma, gemma2, gemma3
    public required string HfClass { get; init; }
    public required string GgufArch { get; init; }
    public required JsonObject Config { get; init; }
    public required Dictionary<string, (long[] Shape, float[] Data)> Tensors { get; init; }
    public required int TokenizerTokens { get; init; }

    public int Dim => (int)Config["hidden_size"]!;
    public int Layers => (int)Config["num_hidden_layers"]!;
    public int Heads => (int)Config["num_attention_heads"]!;
    public int KvHeads => (int)Config["num_key_value_heads"]!;
    public int Ffn => (int)Config["intermediate_size"]!;
    public int Vocab => (int)Config["vocab_size"]!;
    public int HeadDim => Config["head_dim"] is { } h ? (int)h : Dim / Heads;
    public bool Tied => Config["tie_word_embeddings"] is { } t && (bool)t;
    public bool IsGemma => GgufArch.StartsWith("gemma", StringComparison.Ordinal);

    public static readonly string[] Families = ["llama3", "smollm", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3"];

    /// <summary>The checkpoint of a family (shapes small enough for a float64 reference, features of the real models).</summary>
    public static HfFamilyCheckpoint Create(string family, int seed = 1, int? layerCount = null)
    {
        // Gemma 3 alternates five local layers and one global one: six layers hold both kinds.
        int layers = layerCount ?? (family == "gemma3" ? 6 : 2);
        var c = new JsonObject();
        string cls, arch;
        int dim = 64, heads = 4, kv = 2, ffn = 96, vocab = 300;
        int? headDim = null;
        switch (family)
        {
            case "llama3": // Llama 3.2 1B style: llama3 rope scaling, tied embeddings
                cls = "LlamaForCausalLM"; arch = "llama";
                c["rope_theta"] = 500000.0;
                c["rope_scaling"] = new JsonObject
                {
                    ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
                    ["original_max_position_embeddings"] = 64, ["rope_type"] = "llama3",
                };
                c["tie_word_embeddings"] = true;
                c["max_position_embeddings"] = 512;
                break;
            case "smollm": // SmolLM2: llama, tied, no scaling
                cls = "LlamaForCausalLM"; arch = "llama"; kv = 4;
                c["rope_theta"] = 100000.0;
                c["tie_word_embeddings"] = true;
                c["max_position_embeddings"] = 256;
                break;
            case "mistral": // Mistral: explicit head_dim, untied, no sliding window
                cls = "MistralForCausalLM"; arch = "llama"; headDim = 16;
                c["rope_theta"] = 1000000.0;
                c["sliding_window"] = null;
                c["tie_word_embeddings"] = false;
                c["max_position_embeddings"] = 256;
                break;
            case "qwen2": // Qwen2.5 0.5B style: q/k/v biases, tied
                cls = "Qwen2ForCausalLM"; arch = "qwen2";
                c["rope_theta"] = 1000000.0;
                c["tie_word_embeddings"] = true;
                c["use_sliding_window"] = false;
                c["sliding_window"] = 256;
                c["max_window_layers"] = 2;
                c["max_position_embeddings"] = 256;
                break;
            case "qwen3": // Qwen3: head_dim apart from hidden/heads, q/k norms
                cls = "Qwen3ForCausalLM"; arch = "qwen3"; headDim = 32;
                c["rope_theta"] = 1000000.0;
                c["attention_bias"] = false;
                c["tie_word_embeddings"] = false;
                c["max_position_embeddings"] = 256;
                break;
            case "phi3": // Phi-4-mini style: partial rotary, LongRoPE, fused qkv / gate_up, tied
                cls = "Phi3ForCausalLM"; arch = "phi3";
                c["rope_theta"] = 10000.0;
                c["partial_rotary_factor"] = 0.5;
                c["max_position_embeddings"] = 256;
                c["original_max_position_embeddings"] = 64;
                c["sliding_window"] = 262144;
                int pairs = dim / heads / 2 / 2;
                var lf = new JsonArray();
                var sf = new JsonArray();
                for (int i = 0; i < pairs; i++) { lf.Add(1.0 + 0.75 * i); sf.Add(1.0 + 0.25 * i); }
                c["rope_scaling"] = new JsonObject { ["type"] = "longrope", ["long_factor"] = lf, ["short_factor"] = sf };
                c["tie_word_embeddings"] = true;
                break;
            case "gemma": // Gemma 2B style: head_dim apart, one KV head, GELU, tied
                cls = "GemmaForCausalLM"; arch = "gemma"; headDim = 32; kv = 1;
                c["hidden_act"] = "gelu";
                c["hidden_activation"] = "gelu_pytorch_tanh";
                c["rope_theta"] = 10000.0;
                c["max_position_embeddings"] = 256;
                c["tie_word_embeddings"] = true;
                break;
            case "gemma2":
                cls = "Gemma2ForCausalLM"; arch = "gemma2"; headDim = 32;
                c["hidden_act"] = "gelu_pytorch_tanh";
                c["hidden_activation"] = "gelu_pytorch_tanh";
                c["rope_theta"] = 10000.0;
                c["max_position_embeddings"] = 256;
                c["attn_logit_softcapping"] = 50.0;
                c["final_logit_softcapping"] = 30.0;
                c["query_pre_attn_scalar"] = 32;
                c["sliding_window"] = 4;
                c["tie_word_embeddings"] = true;
                break;
            case "gemma3": // Gemma 3 1B style: q/k norms, 1 global layer in 6 with its own rope base, padded embedding
                cls = "Gemma3ForCausalLM"; arch = "gemma3"; headDim = 32; vocab = 320;
                c["hidden_activation"] = "gelu_pytorch_tanh";
                c["rope_theta"] = 1000000.0;
                c["rope_local_base_freq"] = 10000.0;
                c["rope_scaling"] = null;
                c["max_position_embeddings"] = 256;
                c["attn_logit_softcapping"] = null;
                c["final_logit_softcapping"] = null;
                c["query_pre_attn_scalar"] = 32;
                c["sliding_window"] = 4;
                c["sliding_window_pattern"] = 6;
                c["tie_word_embeddings"] = true;
                break;
            default: throw new ArgumentException(family, nameof(family));
        }
        c["architectures"] = new JsonArray(cls);
        c["hidden_size"] = dim;
        c["num_attention_heads"] = heads;
        c["num_key_value_heads"] = kv;
        c["num_hidden_layers"] = layers;
        c["intermediate_size"] = ffn;
        c["vocab_size"] = vocab;
        c["rms_norm_eps"] = 1e-6;
        c["bos_token_id"] = 256;
        c["eos_token_id"] = 257;
        if (headDim is int hd) c["head_dim"] = hd;
        if (!c.ContainsKey("hidden_act")) c["hidden_act"] = "silu";

        var ck = new HfFamilyCheckpoint
        {
            Family = family, HfClass = cls, GgufArch = arch, Config = c,
            Tensors = new Dictionary<string, (long[], float[])>(StringComparer.Ordinal),
            TokenizerTokens = 300,
        };
        ck.FillTensors(new Random(seed));
        return ck;
    }

    private void FillTensors(Random rng)
    {
        int dim = Dim, hd = HeadDim, q = Heads * hd, kv = KvHeads * hd, ffn = Ffn;
        void Add(string name, bool norm, params long[] shape)
        {
            long n = 1;
            foreach (long d in shape) n *= d;
            var data = new float[n];
            for (long i = 0; i < n; i++)
            {
                double u = rng.NextDouble() * 2 - 1;
                // Gemma stores the norm scale as w (used as 1 + w); the others store the scale itself.
                double v = norm ? (IsGemma ? 0.2 * u : 1 + 0.2 * u) : 0.15 * u;
                data[i] = Bf16((float)v);
            }
            Tensors[name] = (shape, data);
        }
        Add("model.embed_tokens.weight", false, Vocab, dim);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", true, dim);
            if (GgufArch == "phi3")
            {
                Add(p + "self_attn.qkv_proj.weight", false, q + 2 * kv, dim);
                Add(p + "mlp.gate_up_proj.weight", false, 2 * ffn, dim);
            }
            else
            {
                Add(p + "self_attn.q_proj.weight", false, q, dim);
                Add(p + "self_attn.k_proj.weight", false, kv, dim);
                Add(p + "self_attn.v_proj.weight", false, kv, dim);
                Add(p + "mlp.gate_proj.weight", false, ffn, dim);
                Add(p + "mlp.up_proj.weight", false, ffn, dim);
            }
            if (GgufArch == "qwen2")
            {
                Add(p + "self_attn.q_proj.bias", false, q);
                Add(p + "self_attn.k_proj.bias", false, kv);
                Add(p + "self_attn.v_proj.bias", false, kv);
            }
            if (GgufArch is "qwen3" or "gemma3")
            {
                Add(p + "self_attn.q_norm.weight", true, hd);
                Add(p + "self_attn.k_norm.weight", true, hd);
            }
            Add(p + "self_attn.o_proj.weight", false, dim, q);
            Add(p + "mlp.down_proj.weight", false, dim, ffn);
            Add(p + "post_attention_layernorm.weight", true, dim);
            if (GgufArch is "gemma2" or "gemma3")
            {
                Add(p + "pre_feedforward_layernorm.weight", true, dim);
                Add(p + "post_feedforward_layernorm.weight", true, dim);
            }
        }
        Add("model.norm.weight", true, dim);
        if (!Tied) Add("lm_head.weight", false, Vocab, dim);
    }

    public static float Bf16(float v) => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(v) & 0xFFFF0000u);

    /// <summary>Writes config.json, model.safetensors (F32 or BF16), tokenizer.json and tokenizer_config.json into dir.</summary>
    public string Write(string dir, string dtype = "BF16", Func<string, bool>? skip = null, Func<string, long[], long[]>? reshape = null, JsonObject? configOverride = null)
    {
        Directory.CreateDirectory(dir);
        var config = (JsonObject)JsonNode.Parse((configOverride ?? Config).ToJsonString())!;
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        WriteSafetensors(Path.Combine(dir, "model.safetensors"), dtype, skip, reshape);
        WriteTokenizer(dir);
        return dir;
    }

    private void WriteSafetensors(string path, string dtype, Func<string, bool>? skip, Func<string, long[], long[]>? reshape)
    {
        int eb = dtype == "F32" ? 4 : 2;
        var header = new JsonObject();
        var names = Tensors.Keys.Where(n => skip is null || !skip(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        long at = 0;
        var shapes = new Dictionary<string, long[]>();
        foreach (string n in names)
        {
            var shape = reshape?.Invoke(n, Tensors[n].Shape) ?? Tensors[n].Shape;
            shapes[n] = shape;
            long count = 1;
            foreach (long d in shape) count *= d;
            long bytes = count * eb;
            var sh = new JsonArray();
            foreach (long d in shape) sh.Add(d);
            header[n] = new JsonObject { ["dtype"] = dtype, ["shape"] = sh, ["data_offsets"] = new JsonArray(at, at + bytes) };
            at += bytes;
        }
        header["__metadata__"] = new JsonObject { ["format"] = "pt" };
        byte[] h = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - h.Length % 8) % 8;
        using var fs = File.Create(path);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(h.Length + pad));
        fs.Write(len);
        fs.Write(h);
        for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
        foreach (string n in names)
        {
            var data = Tensors[n].Data;
            long count = 1;
            foreach (long d in shapes[n]) count *= d;
            var buf = new byte[count * eb];
            for (long i = 0; i < count; i++)
            {
                float v = i < data.Length ? data[i] : 0f;
                if (eb == 4) BinaryPrimitives.WriteSingleLittleEndian(buf.AsSpan((int)(i * 4)), v);
                else BinaryPrimitives.WriteUInt16LittleEndian(buf.AsSpan((int)(i * 2)), (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16));
            }
            fs.Write(buf);
        }
    }

    /// <summary>
    /// A byte-level BPE vocabulary of <see cref="TokenizerTokens"/> entries: the 256 byte symbols (GPT-2's
    /// byte-to-unicode table), two special tokens, then merged pairs of lower-case letters.
    /// </summary>
    private void WriteTokenizer(string dir)
    {
        var symbols = ByteSymbols();
        var vocab = new JsonObject();
        for (int i = 0; i < 256; i++) vocab[symbols[i]] = i;
        var merges = new JsonArray();
        int id = 258;
        var seen = new HashSet<string>(symbols);
        for (int a = 'a'; a <= 'z' && id < TokenizerTokens; a++)
            for (int b = 'a'; b <= 'z' && id < TokenizerTokens; b += 3)
            {
                string m = $"{(char)a}{(char)b}";
                if (!seen.Add(m)) continue;
                vocab[m] = id++;
                merges.Add($"{(char)a} {(char)b}");
            }
        var added = new JsonArray
        {
            new JsonObject { ["id"] = 256, ["content"] = "<|begin_of_text|>", ["special"] = true },
            new JsonObject { ["id"] = 257, ["content"] = "<|end_of_text|>", ["special"] = true },
        };
        var tok = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            // Llama 3's pre-tokenizer (llama.cpp: "llama-bpe").
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray
                {
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+" },
                        ["behavior"] = "Isolated", ["invert"] = false,
                    },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false },
                },
            },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = merges },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tok.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            new JsonObject { ["bos_token"] = "<|begin_of_text|>", ["eos_token"] = "<|end_of_text|>", ["add_bos_token"] = true }.ToJsonString());
    }

    /// <summary>GPT-2's printable stand-ins for the 256 byte values.</summary>
    private static string[] ByteSymbols()
    {
        var direct = new List<int>();
        for (int b = '!'; b <= '~'; b++) direct.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) direct.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) direct.Add(b);
        var s = new string[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
            s[b] = direct.Contains(b) ? ((char)b).ToString() : ((char)(256 + extra++)).ToString();
        return s;
    }

    public static string Json(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
