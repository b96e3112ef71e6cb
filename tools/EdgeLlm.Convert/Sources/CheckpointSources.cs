namespace EdgeLlm.Convert.Sources;

/// <summary>Opens a checkpoint, detecting its format from the path.</summary>
public static class CheckpointSources
{
    /// <summary>
    /// A directory with config.json: Hugging Face safetensors; with params.json: Meta's consolidated.*.pth;
    /// a <c>.gguf</c> file: re-quantize; any other file: a llama2.c checkpoint (<c>.bin</c>).
    /// </summary>
    public static CheckpointSource Open(string path)
    {
        try { return OpenAny(path); }
        catch (InvalidOperationException e) when (JsonFile.IsWrongJsonType(e))
        {
            throw new EdgeLlmException($"{path}: a JSON value (config.json, params.json, a safetensors header or tokenizer.json) has the wrong type for its key");
        }
    }

    private static CheckpointSource OpenAny(string path)
    {
        if (Directory.Exists(path))
        {
            if (File.Exists(Path.Combine(path, "config.json"))) return SafetensorsSource.Open(path);
            if (File.Exists(Path.Combine(path, "params.json"))) return OpenMeta(path);
            throw new EdgeLlmException($"{path}: directory has neither config.json (Hugging Face) nor params.json (Meta)");
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: input not found", path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext == ".gguf") return GgufSource.Open(path);
        if (ext == ".pth") throw new EdgeLlmException($"{path}: pass the directory holding params.json and the consolidated.*.pth shards, not one shard");
        if (ext == ".safetensors") throw new EdgeLlmException($"{path}: pass the Hugging Face directory (with config.json), not one .safetensors file");
        return Llama2cSource.Open(path);
    }

    /// <summary>Meta's original release (params.json + consolidated.NN.pth + tokenizer.model).</summary>
    private static CheckpointSource OpenMeta(string dir) =>
        MetaPthSource.Open(dir, tokenizerPath => TokenizerLoader.Load(tokenizerPath));
}
