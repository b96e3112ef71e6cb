namespace EdgeLlm.Tests;

/// <summary>Locations of the repository's own files and of the shared ground-truth folder.</summary>
internal static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>The bundled stories260K model (the repo's own copy).</summary>
    public static string Stories260K => Path.Combine(RepoRoot, "models", "stories260K.gguf");

    /// <summary>Test data shipped in the repo (copies of ../shared files the tests need).</summary>
    public static string Data(string name) => Path.Combine(RepoRoot, "tests", "data", name);

    /// <summary>A fresh file path in its own directory under this test process's temporary root, which is
    /// deleted when the process exits (random models of hundreds of MB must not pile up in /tmp run after run).</summary>
    public static string TempFile(string name)
    {
        string dir = Path.Combine(ProcessTempRoot.Value, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    private static readonly Lazy<string> ProcessTempRoot = new(() =>
    {
        string root = Path.Combine(Path.GetTempPath(), "edgellm-tests", "run-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(root, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        };
        return root;
    });

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
