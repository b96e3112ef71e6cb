using System.Text.Json;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// Hugging Face tokenizer files: <c>tokenizer.json</c> with a byte-level BPE model (vocab, merges,
/// added_tokens) becomes a "gpt2" vocabulary as llama.cpp's converter writes it (added tokens that are special
/// or look special are control tokens, other added tokens user-defined, missing ids <c>[PADn]</c> unused), and
/// a BPE model with byte_fallback (a SentencePiece model exported by transformers: Gemma, Llama 2, Phi-3)
/// becomes the "llama" vocabulary llama.cpp writes from the tokenizer.model it came from;
/// <c>tokenizer_config.json</c> supplies the special tokens, add_bos/add_eos and the chat template (also read
/// from <c>chat_template.jinja</c>), and is applied on top of a SentencePiece vocabulary too.
/// </summary>
internal static class HfTokenizer
{
    private const string Llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Gpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    private const string Qwen2Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Gpt4oRegex = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    /// <summary>Reads tokenizer.json (+ tokenizer_config.json beside it) as a byte-level BPE vocabulary.</summary>
    public static TokenizerData LoadBpe(string tokenizerJson, int vocabSize, int? configBos, int? configEos)
    {
        using var j = JsonFile.Open(tokenizerJson);
        if (!j.Root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw j.Error("model", "is missing");
        string type = model.TryGetProperty("type", out var ty) && ty.ValueKind == JsonValueKind.String ? ty.GetString()! : "";
        if (type != "BPE") throw j.Error("model.type", $"'{type}' is not supported (byte-level BPE only; for SentencePiece provide tokenizer.model)");
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object) throw j.Error("model.vocab", "is missing");
        bool sentencePiece = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;

        // Every id is bounded by the vocabulary the model declares (config.json's vocab_size) or, without one, by the
        // number of entries plus a margin for gaps, so a hostile id cannot make the converter allocate gigabytes.
        int entries = 0;
        foreach (var _ in vocab.EnumerateObject()) entries++;
        if (j.Root.TryGetProperty("added_tokens", out var atCount) && atCount.ValueKind == JsonValueKind.Array) entries += atCount.GetArrayLength();
        long idLimit = vocabSize > 0 ? vocabSize : Math.Min((long)entries + 65536, 1 << 24);
        string limitWhy = vocabSize > 0 ? $"the model's vocabulary of {vocabSize}" : $"the {entries} entries of the tokenizer (+65536)";

        var byId = new Dictionary<int, string>();
        foreach (var p in vocab.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0) throw j.Error("model.vocab", $"entry '{p.Name}' has id {p.Value}");
            if (id >= idLimit || id >= MaxTokens) throw j.Error("model.vocab", $"entry '{p.Name}' has id {id}, outside {limitWhy}");
            byId[id] = p.Name;
        }
        var added = new Dictionary<int, (string Content, bool Special)>();
        if (j.Root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in at.EnumerateArray())
            {
                if (!a.TryGetProperty("id", out var idv) || idv.ValueKind != JsonValueKind.Number || !idv.TryGetInt32(out int id)
                    || !a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                    throw j.Error("added_tokens", $"entry {a} lacks a valid id or content");
                if (id < 0 || id >= idLimit || id >= MaxTokens) throw j.Error("added_tokens", $"token '{c}' has id {id}, outside {limitWhy}");
                bool special = a.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                added[id] = (c.GetString() ?? "", special);
                byId[id] = c.GetString() ?? "";
            }
        }
        int n = vocabSize > 0 ? vocabSize : byId.Count == 0 ? 0 : byId.Keys.Max() + 1;
        var tokens = new string[n];
        var types = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (!byId.TryGetValue(i, out string? t)) { tokens[i] = $"[PAD{i}]"; types[i] = 5; continue; }
            if (added.TryGetValue(i, out var a))
            {
                if (a.Special || LooksSpecial(t)) types[i] = 3;
                else { types[i] = 4; t = t.Replace('\u2581', ' '); }
            }
            else types[i] = 1;
            tokens[i] = t;
        }

        var merges = new List<string>();
        var mergePairs = new List<(string Left, string Right)>();
        if (model.TryGetProperty("merges", out var mg) && mg.ValueKind == JsonValueKind.Array)
        {
            foreach (var m in mg.EnumerateArray())
            {
                if (m.ValueKind == JsonValueKind.String)
                {
                    string line = m.GetString()!;
                    merges.Add(line);
                    int sp = line.Length > 1 ? line.IndexOf(' ', 1) : -1;
                    mergePairs.Add(sp >= 0 ? (line[..sp], line[(sp + 1)..]) : ("", ""));
                }
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2
                         && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                {
                    merges.Add(m[0].GetString() + " " + m[1].GetString());
                    mergePairs.Add((m[0].GetString()!, m[1].GetString()!));
                }
                else throw j.Error("model.merges", $"entry {m} is neither \"a b\" nor [\"a\", \"b\"]");
            }
        }
        if (sentencePiece) return LoadSentencePiece(j, model, tokens, types, added, mergePairs, configBos, configEos, tokenizerJson);

        var data = new TokenizerData
        {
            Model = "gpt2",
            Pre = DetectPre(j),
            Tokens = tokens,
            TokenTypes = types,
            Merges = merges.ToArray(),
            Bos = configBos is int b && b < n ? b : -1,
            Eos = configEos is int e && e < n ? e : -1,
            AddBos = PostProcessorAddsBos(j.Root),
        };
        return ApplyConfig(data, Path.GetDirectoryName(Path.GetFullPath(tokenizerJson))!);
    }

    /// <summary>Upper bound on token ids read from JSON (the largest real vocabularies are ~260k).</summary>
    private const int MaxTokens = 1 << 22;

    /// <summary>
    /// A SentencePiece model exported as tokenizer.json (BPE with byte_fallback, pieces with U+2581 for spaces) as
    /// the "llama" vocabulary llama.cpp writes from the original tokenizer.model: &lt;0xXX&gt; pieces are byte tokens, the
    /// unk_token unknown, added tokens control (special) or user-defined (with U+2581 written as spaces, score -1000).
    /// SentencePiece merges adjacent pieces highest score first; the exported merges list every split of a piece in
    /// the order of the piece's score, so a piece's score here is minus the rank of the first merge that makes it.
    /// add_space_prefix follows the normalizer (Prepend "▁") or a Metaspace pre-tokenizer that prepends.
    /// </summary>
    private static TokenizerData LoadSentencePiece(JsonFile j, JsonElement model, string[] tokens, int[] types,
        Dictionary<int, (string Content, bool Special)> added, List<(string Left, string Right)> merges, int? configBos, int? configEos, string path)
    {
        int n = tokens.Length;
        var firstMerge = new Dictionary<string, int>(merges.Count, StringComparer.Ordinal);
        for (int r = 0; r < merges.Count; r++) firstMerge.TryAdd(merges[r].Left + merges[r].Right, r);
        string? unk = model.TryGetProperty("unk_token", out var u) && u.ValueKind == JsonValueKind.String ? u.GetString() : null;
        var scores = new float[n];
        int unkId = -1;
        for (int i = 0; i < n; i++)
        {
            if (types[i] == 5) { scores[i] = -10000f; continue; } // [PADn]
            if (added.TryGetValue(i, out var a))
            {
                // As llama.cpp's converter treats added_tokens_decoder entries of a SentencePiece vocabulary.
                bool control = a.Special || LooksSpecial(a.Content);
                types[i] = control ? 3 : 4;
                tokens[i] = control ? a.Content : a.Content.Replace('\u2581', ' ');
                scores[i] = -1000f;
                if (a.Content == unk) { types[i] = 2; unkId = i; }
                continue;
            }
            string t = tokens[i];
            if (t == unk) { types[i] = 2; unkId = i; scores[i] = 0f; continue; }
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                && byte.TryParse(t.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out _))
            {
                types[i] = 6;
                scores[i] = 0f;
                continue;
            }
            types[i] = 1;
            // Pieces no merge makes (single characters) are only ever starting symbols: their score is never compared.
            scores[i] = firstMerge.TryGetValue(t, out int rank) ? -1f - rank : -1f - merges.Count;
        }
        var data = new TokenizerData
        {
            Model = "llama",
            Tokens = tokens,
            Scores = scores,
            TokenTypes = types,
            Bos = configBos is int b && b < n ? b : -1,
            Eos = configEos is int e && e < n ? e : -1,
            Unknown = unkId,
            AddBos = PostProcessorAddsBos(j.Root),
            AddSpacePrefix = PrependsSpace(j.Root),
        };
        return ApplyConfig(data, Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Whether the exported SentencePiece model puts "▁" in front of the text (add_dummy_prefix).</summary>
    private static bool PrependsSpace(JsonElement root)
    {
        bool found = false;
        void Visit(JsonElement e, string listKey)
        {
            if (e.ValueKind != JsonValueKind.Object) return;
            string? type = e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type == "Sequence" && e.TryGetProperty(listKey, out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var x in list.EnumerateArray()) Visit(x, listKey);
            else if (type == "Prepend" && e.TryGetProperty("prepend", out var pp) && pp.ValueKind == JsonValueKind.String && pp.GetString() == "\u2581")
                found = true;
            else if (type == "Metaspace")
            {
                string? scheme = e.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String ? ps.GetString() : null;
                bool legacy = e.TryGetProperty("add_prefix_space", out var ap) && ap.ValueKind == JsonValueKind.True;
                if (scheme is "always" or "first" || (scheme is null && legacy)) found = true;
            }
        }
        if (root.TryGetProperty("normalizer", out var norm)) Visit(norm, "normalizers");
        if (root.TryGetProperty("pre_tokenizer", out var pre)) Visit(pre, "pretokenizers");
        return found;
    }

    /// <summary>
    /// tokenizer_config.json on top of a vocabulary: bos/eos/unk/pad by content, add_bos/add_eos, the chat
    /// template (string, the "default" entry of a list, or chat_template.jinja), and added_tokens_decoder entries
    /// inside the vocabulary (control if special, else user-defined, score -1000 as llama.cpp).
    /// </summary>
    public static TokenizerData ApplyConfig(TokenizerData data, string dir)
    {
        string configPath = Path.Combine(dir, "tokenizer_config.json");
        string jinja = Path.Combine(dir, "chat_template.jinja");
        string? template = File.Exists(jinja) ? File.ReadAllText(jinja) : null;
        if (!File.Exists(configPath)) return template is null ? data : data with { ChatTemplate = template };

        using var j = JsonFile.Open(configPath);
        var tokens = (string[])data.Tokens.Clone();
        var types = (int[])data.TokenTypes.Clone();
        var scores = data.Scores is null ? null : (float[])data.Scores.Clone();
        if (j.Root.TryGetProperty("added_tokens_decoder", out var atd) && atd.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in atd.EnumerateObject())
            {
                if (!int.TryParse(p.Name, out int id) || id < 0 || id >= tokens.Length) continue;
                if (!p.Value.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String) continue;
                bool special = p.Value.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                string content = c.GetString()!;
                if (data.Model == "llama" && tokens[id] == content && types[id] != 1) continue; // already typed by the model
                tokens[id] = special || LooksSpecial(content) ? content : content.Replace('\u2581', ' ');
                types[id] = special || LooksSpecial(content) ? 3 : 4;
                if (scores is not null) scores[id] = -1000f;
            }
        }
        int Find(string key, int fallback)
        {
            if (!j.Root.TryGetProperty(key, out var v)) return fallback;
            string? content = v.ValueKind == JsonValueKind.String ? v.GetString()
                : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString() : null;
            if (content is null) return fallback;
            int id = Array.IndexOf(tokens, content);
            return id >= 0 ? id : fallback;
        }
        if (j.Root.TryGetProperty("chat_template", out var ct))
        {
            if (ct.ValueKind == JsonValueKind.String) template = ct.GetString();
            else if (ct.ValueKind == JsonValueKind.Array)
            {
                foreach (var e in ct.EnumerateArray())
                    if (e.TryGetProperty("name", out var nm) && nm.GetString() == "default" && e.TryGetProperty("template", out var tp))
                        template = tp.GetString();
            }
        }
        return data with
        {
            Tokens = tokens,
            TokenTypes = types,
            Scores = scores,
            Bos = Find("bos_token", data.Bos),
            Eos = Find("eos_token", data.Eos),
            Unknown = Find("unk_token", data.Unknown),
            Padding = Find("pad_token", data.Padding),
            AddBos = j.OptBool("add_bos_token") ?? data.AddBos,
            AddEos = j.OptBool("add_eos_token") ?? data.AddEos,
            ChatTemplate = template ?? data.ChatTemplate,
        };
    }

    /// <summary>llama.cpp's heuristic for added tokens that are special even when not flagged so.</summary>
    internal static bool LooksSpecial(string t) =>
        t is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (t.StartsWith("<|", StringComparison.Ordinal) && t.EndsWith("|>", StringComparison.Ordinal))
        || (t.StartsWith("<\uFF5C", StringComparison.Ordinal) && t.EndsWith("\uFF5C>", StringComparison.Ordinal))
        || (t.StartsWith("<unused", StringComparison.Ordinal) && t.EndsWith('>'));

    /// <summary>
    /// The <c>tokenizer.ggml.pre</c> name llama.cpp's converter gives this tokenizer. llama.cpp finds it by hashing the
    /// ids of a fixed text (one hash per known model); this reads the same fact from the pre_tokenizer itself:
    /// Llama 3's split regex is "llama-bpe", Qwen 2's (single digits) "qwen2", GPT-4o's "gpt-4o" (Phi-4-mini),
    /// individual Digits before a regex-splitting ByteLevel "smollm" (SmolLM, StarCoder), a plain ByteLevel with its
    /// built-in GPT-2 regex (or that regex spelt out) "gpt-2", no pre_tokenizer at all "default". Anything else is
    /// an error naming the key: llama.cpp would split it differently.
    /// </summary>
    internal static string DetectPre(JsonFile j)
    {
        var root = j.Root;
        if (!root.TryGetProperty("pre_tokenizer", out var pt) || pt.ValueKind == JsonValueKind.Null) return "default";
        var regexes = new List<string>();
        bool byteLevelRegex = false, digits = false, other = false;
        void Visit(JsonElement e)
        {
            string? type = e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type == "Sequence" && e.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var x in list.EnumerateArray()) Visit(x);
            else if (type == "Split" && e.TryGetProperty("pattern", out var pat) && pat.ValueKind == JsonValueKind.Object
                     && pat.TryGetProperty("Regex", out var rx) && rx.ValueKind == JsonValueKind.String)
                regexes.Add(rx.GetString()!);
            else if (type == "ByteLevel")
                byteLevelRegex |= !(e.TryGetProperty("use_regex", out var ur) && ur.ValueKind == JsonValueKind.False);
            else if (type == "Digits" && e.TryGetProperty("individual_digits", out var ind) && ind.ValueKind == JsonValueKind.True)
                digits = true;
            else other = true;
        }
        Visit(pt);
        if (!other && regexes.Count == 1 && !byteLevelRegex && !digits)
        {
            switch (regexes[0])
            {
                case Llama3Regex: return "llama-bpe";
                case Qwen2Regex: return "qwen2";
                case Gpt4oRegex: return "gpt-4o";
                case Gpt2Regex: return "gpt-2";
            }
        }
        if (!other && regexes.Count == 0 && byteLevelRegex) return digits ? "smollm" : "gpt-2";
        string what = regexes.Count > 0 ? $"split regex \"{regexes[0]}\"" : pt.GetRawText();
        if (what.Length > 200) what = what[..200] + "...";
        throw j.Error("pre_tokenizer", $"is not one EdgeLlm knows (llama-bpe, qwen2, gpt-4o, smollm, gpt-2): {what}".ReplaceLineEndings(" "));
    }

    /// <summary>True when the post-processor's single-sequence template starts with a special token (BOS).</summary>
    private static bool? PostProcessorAddsBos(JsonElement root)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || pp.ValueKind != JsonValueKind.Object) return null;
        var candidates = new List<JsonElement> { pp };
        if (pp.TryGetProperty("processors", out var list) && list.ValueKind == JsonValueKind.Array) candidates.AddRange(list.EnumerateArray());
        foreach (var p in candidates)
        {
            if (p.TryGetProperty("type", out var t) && t.GetString() == "TemplateProcessing"
                && p.TryGetProperty("single", out var single) && single.ValueKind == JsonValueKind.Array && single.GetArrayLength() > 0)
                return single[0].TryGetProperty("SpecialToken", out _);
        }
        return null;
    }
}
