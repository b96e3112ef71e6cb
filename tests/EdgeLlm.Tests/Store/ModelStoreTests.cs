using EdgeLlm.Cli.Store;

namespace EdgeLlm.Tests.Store;

public sealed class ModelStoreTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "edgellm-tests", "store-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, true);
    }

    private ModelManifest Add(ModelStore store, string name, params string[] aliases)
    {
        Directory.CreateDirectory(_root);
        string f = Path.Combine(_root, name + ".staging");
        File.Copy(TestPaths.Stories260K, f);
        return store.Commit(f, name, aliases, "test", "00", new FileInfo(TestPaths.Stories260K).Length);
    }

    [Fact]
    public void AnAliasOfSeveralModelsIsAnErrorNamingThem()
    {
        var store = new ModelStore(_root);
        Add(store, "m-Q4_K_M", "org/m", "m");
        Add(store, "m-Q8_0", "org/m", "m");
        var e = Assert.Throws<EdgeLlmException>(() => store.Find("org/m"));
        Assert.Equal("'org/m' names 2 stored models (m-Q4_K_M, m-Q8_0): give the full name", e.Message);
        Assert.Equal("m-Q8_0", store.Find("m-q8_0")!.Name); // a name wins over aliases, case-insensitive
        Assert.Null(store.Find("nothing"));
    }

    [Fact]
    public void ManifestsThatPointOutsideTheStoreOrAreNotJsonAreIgnored()
    {
        var store = new ModelStore(_root);
        Add(store, "good");
        File.WriteAllText(Path.Combine(_root, "evil.json"),
            "{\"name\":\"evil\",\"aliases\":[],\"source\":\"x\",\"file\":\"../../etc/passwd\",\"sha256\":\"00\",\"size\":1,\"date\":\"2026-01-01T00:00:00Z\"}");
        File.WriteAllText(Path.Combine(_root, "broken.json"), "{not json");
        Assert.Equal(["good"], store.List().Select(m => m.Name).ToArray());
        Assert.Null(store.Resolve("evil"));
    }

    [Theory]
    [InlineData("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Llama-3.2-1B-Instruct-Q4_K_M")]
    [InlineData("sub/dir/my model (v2).GGUF", "my_model__v2_")]
    [InlineData(".hidden.gguf", "hidden")]
    public void NamesFromFiles(string file, string name)
    {
        Assert.Equal(name, ModelStore.NameFromFile(file));
        Assert.True(ModelStore.IsValidName(name));
    }

    [Fact]
    public void TheStoreFolderFollowsTheEnvironment()
    {
        static string Root(string? models, string? xdg) => ModelStore.DefaultRoot(
            name => name == ModelStore.Variable ? models : name == "XDG_DATA_HOME" ? xdg : null, "/home/u");
        Assert.Equal("/home/u/.local/share/edgellm/models", Root(null, null));
        Assert.Equal("/data/edgellm/models", Root(null, "/data"));
        Assert.Equal("/home/u/.local/share/edgellm/models", Root("", "relative/not/allowed"));
        Assert.Equal("/models", Root("/models", "/data"));
    }
}
