namespace EdgeLlm.Tests;

/// <summary>Locations of the repository's own files and of the shared ground-truth folder.</summary>
internal static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>The bundled stories260K model (the repo's own copy).</summary>
    public static string Stories260K => Path.Combine(RepoRoot, "models", "stories260K.gguf");

    /// <summary>Test data shipped in the repo (copies of ../shared files the tests need).</summary>
    public static string Data(string name) => Path.Combine(RepoRoot, "tests", "data", name);

    public static string TempFile(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "edgellm-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    private static string FindRepoRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null)
        {
            if (File.Exists(Path.Combine(dir, "EdgeLlm.sln"))) return dir;
            dir = Path.GetDirectoryName(dir);
        }
        throw new InvalidOperationException("EdgeLlm.sln not found above " + AppContext.BaseDirectory);
    }
}
