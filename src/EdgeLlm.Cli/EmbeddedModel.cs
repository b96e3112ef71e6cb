using EdgeLlm.Gguf;

namespace EdgeLlm.Cli;

/// <summary>
/// The demo model (stories260K, MIT) carried inside the executable as a manifest resource, so `edgellm run` works
/// with no file anywhere. Opened by copying the resource into aligned memory and parsing it with the GGUF loader's
/// usual checks (<see cref="GgufFile.FromStream"/>).
/// </summary>
public static class EmbeddedModel
{
    /// <summary>The name `-m` accepts for it (also with .gguf), and what messages call it.</summary>
    public const string Name = "stories260K";

    /// <summary>The stand-in path <see cref="ModelPaths.Resolve"/> returns for the embedded model.</summary>
    public const string Marker = "builtin:" + Name;

    private const string ResourceName = "stories260K.gguf";

    /// <summary>True when this build carries the model (every published build does).</summary>
    public static bool Present
    {
        get
        {
            using var s = typeof(EmbeddedModel).Assembly.GetManifestResourceStream(ResourceName);
            return s is not null;
        }
    }

    /// <summary>Whether `-m <paramref name="given"/>` names the embedded model.</summary>
    public static bool IsName(string given) =>
        given is Name or ResourceName or Marker || string.Equals(given, Name, StringComparison.OrdinalIgnoreCase)
        || string.Equals(given, ResourceName, StringComparison.OrdinalIgnoreCase);

    /// <summary>Bytes of the embedded GGUF (0 when absent).</summary>
    public static long Size
    {
        get
        {
            using var s = typeof(EmbeddedModel).Assembly.GetManifestResourceStream(ResourceName);
            return s?.Length ?? 0;
        }
    }

    /// <summary>Opens the embedded model; <paramref name="options"/>' mlock is honoured (the bytes are always in memory).</summary>
    public static GgufFile Open(GgufLoadOptions? options = null)
    {
        using var s = typeof(EmbeddedModel).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new FileNotFoundException($"{Marker}: this build of edgellm carries no embedded model; give one with -m FILE");
        return GgufFile.FromStream(Marker, s, s.Length, options?.LockInMemory ?? false);
    }
}
