using System.Text.Json;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;

namespace EdgeLlm.Convert;

/// <summary>
/// <c>edgellm-convert --vocab-only</c>: a GGUF holding only the tokenizer (no tensors), like llama.cpp's
/// <c>convert_hf_to_gguf.py --vocab-only</c> and its ggml-vocab-*.gguf files. The input is a tokenizer file
/// (tokenizer.json, tokenizer.model, a llama2.c tokenizer or a GGUF) or a Hugging Face directory; a config.json
/// beside it supplies general.architecture (model_type) and the vocabulary size the token list is padded to.
/// </summary>
public static class VocabOnly
{
    public static (string Path, int Tokens) Write(string input, string output, string? name)
    {
        string dir = Directory.Exists(input) ? input : Path.GetDirectoryName(Path.GetFullPath(input))!;
        (string arch, int vocabSize) = ReadConfig(Path.Combine(dir, "config.json"));
        var tok = TokenizerLoader.Load(input, vocabSize);
        int n = Math.Max(tok.Tokens.Length, vocabSize);

        var w = new GgufWriter();
        w.Set("general.architecture", arch);
        w.Set("general.name", name ?? Path.GetFileName(Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar)));
        GgufOutput.AddTokenizer(w, tok, n);
        string partial = output + ".partial";
        w.Write(partial);
        File.Move(partial, output, overwrite: true);
        return (output, n);
    }

    /// <summary>model_type and vocab_size of a config.json, if there is one ("llama" and -1 otherwise).</summary>
    private static (string Arch, int VocabSize) ReadConfig(string path)
    {
        if (!File.Exists(path)) return ("llama", -1);
        using var j = JsonFile.Open(path);
        string arch = j.OptString("model_type") switch
        {
            null or "" or "mistral" => "llama",
            "gemma3_text" => "gemma3",
            string t => t,
        };
        int vocab = -1;
        if (j.Root.TryGetProperty("vocab_size", out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int vs) && vs > 0)
            vocab = vs;
        else if (j.Root.TryGetProperty("text_config", out var tc) && tc.ValueKind == JsonValueKind.Object
                 && tc.TryGetProperty("vocab_size", out var tv) && tv.ValueKind == JsonValueKind.Number && tv.TryGetInt32(out int tvs) && tvs > 0)
            vocab = tvs;
        return (arch, vocab);
    }
}
