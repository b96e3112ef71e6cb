using EdgeLlm.Gguf;

namespace EdgeLlm.Cli;

/// <summary>
/// Finds the model to load: the -m argument (a file; the name stories260K means the embedded demo model unless a
/// file of that name exists; else the name or alias of a model in the store), else the demo model embedded in the
/// executable (<see cref="EmbeddedModel"/>), else the bundled stories260K next to the binary or in the repo.
/// </summary>
public static class ModelPaths
{
    public const string BundledName = "stories260K.gguf";

    public static string Resolve(string? given)
    {
        if (given is not null)
        {
            if (File.Exists(given)) return given;
            if (EmbeddedModel.IsName(given) && EmbeddedModel.Present) return EmbeddedModel.Marker;
            if (Directory.Exists(given)) throw new FileNotFoundException($"{given}: is a directory, not a model file");
            var store = Store.ModelStore.Default();
            if (store.Resolve(given) is { } stored) return stored;
            throw new FileNotFoundException($"{given}: model file not found, nor a stored model of that name in {store.Root} (see 'edgellm list')");
        }
        if (EmbeddedModel.Present) return EmbeddedModel.Marker;
        foreach (string candidate in BundledCandidates())
            if (File.Exists(candidate)) return Path.GetRelativePath(Environment.CurrentDirectory, candidate);
        throw new FileNotFoundException(
            $"no model given (-m) and the bundled {BundledName} was not found (looked in {string.Join(", ", BundledCandidates())})");
    }

    /// <summary>Whether a positional argument names a model rather than being prompt text: a file, a *.gguf path, a built-in name.</summary>
    public static bool LooksLikeModel(string arg) =>
        File.Exists(arg) || arg.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || EmbeddedModel.IsName(arg)
        || IsStoredName(arg);

    /// <summary>A name or alias of a model in the store (names have no spaces, so a prompt is never one).</summary>
    private static bool IsStoredName(string arg)
    {
        if (arg.Length == 0 || arg.Contains(' ') || arg.Contains('/')) return false;
        try { return Store.ModelStore.Default().Resolve(arg) is not null; }
        catch (EdgeLlmException) { return true; } // ambiguous alias: let -m resolution say so
    }

    /// <summary>Opens what <see cref="Resolve"/> returned: the embedded model for its marker, else the file.</summary>
    public static GgufFile Open(string resolved, GgufLoadOptions? options = null) =>
        resolved == EmbeddedModel.Marker ? EmbeddedModel.Open(options)
        : options is null ? GgufFile.Open(resolved) : GgufFile.Open(resolved, options);

    /// <summary>Next to the executable, in models/ next to it, and in the repository's models/ (dist/&lt;name&gt;/edgellm -> ../../models).</summary>
    public static IEnumerable<string> BundledCandidates()
    {
        // Inside the embedded AVX-512 image (a library loaded from memory) the executable's folder comes from its path.
        string exeDir = ImageSelection.InEmbeddedImage && Environment.ProcessPath is { } exe ? Path.GetDirectoryName(exe)! : AppContext.BaseDirectory;
        yield return Path.GetFullPath(Path.Combine(exeDir, BundledName));
        yield return Path.GetFullPath(Path.Combine(exeDir, "models", BundledName));
        for (string? d = exeDir; d is not null; d = Path.GetDirectoryName(d))
        {
            string p = Path.Combine(d, "models", BundledName);
            if (File.Exists(p) && File.Exists(Path.Combine(d, "EdgeLlm.sln"))) { yield return p; yield break; }
        }
        yield return Path.GetFullPath(Path.Combine("models", BundledName));
    }
}
