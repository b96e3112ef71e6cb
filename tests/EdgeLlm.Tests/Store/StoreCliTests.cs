using EdgeLlm.Cli.Store;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Store;

/// <summary>The store's variables are process-wide: these tests run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class StoreEnvironment
{
    public const string Name = "store environment";
}

/// <summary>`pull`, `import`, `list`, `rm` and `-m NAME` through the CLI, with $EDGELLM_MODELS and $HF_ENDPOINT set.</summary>
[Collection(StoreEnvironment.Name)]
public sealed class StoreCliTests : IDisposable
{
    private readonly FakeHub _hub = new();
    private readonly string _root = Path.Combine(Path.GetTempPath(), "edgellm-tests", "store-" + Guid.NewGuid().ToString("N"));
    private readonly string? _oldModels = Environment.GetEnvironmentVariable(ModelStore.Variable);
    private readonly string? _oldEndpoint = Environment.GetEnvironmentVariable(HubClient.EndpointVariable);
    private readonly string? _oldToken = Environment.GetEnvironmentVariable(HubClient.TokenVariable);

    public StoreCliTests()
    {
        Environment.SetEnvironmentVariable(ModelStore.Variable, _root);
        Environment.SetEnvironmentVariable(HubClient.EndpointVariable, _hub.Endpoint);
        Environment.SetEnvironmentVariable(HubClient.TokenVariable, null);
        _hub.Repos["someone/stories-GGUF"] = new() { ["stories260K.gguf"] = File.ReadAllBytes(TestPaths.Stories260K) };
    }

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(ModelStore.Variable, _oldModels);
        Environment.SetEnvironmentVariable(HubClient.EndpointVariable, _oldEndpoint);
        Environment.SetEnvironmentVariable(HubClient.TokenVariable, _oldToken);
        _hub.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, true);
    }

    [Fact]
    public void PullListRunByNameAndRemove()
    {
        var r = CliRunner.InProcess("pull", "hf:someone/stories-GGUF");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.StartsWith("stories260K: pulled hf:someone/stories-GGUF:stories260K.gguf", r.Stdout);
        Assert.Contains($"sha256 {FakeHub.Sha256(File.ReadAllBytes(TestPaths.Stories260K))} verified", r.Stdout);

        r = CliRunner.InProcess("list");
        Assert.Equal(0, r.ExitCode);
        string[] lines = r.Stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("stories260K ", lines[1]);
        Assert.Contains("hf:someone/stories-GGUF:stories260K.gguf", lines[1]);

        // -m by name and by alias gives the same greedy text as -m with the path.
        var byPath = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "-p", "Once upon a time", "-n", "12", "--temp", "0");
        var byName = CliRunner.InProcess("run", "-m", "stories260K", "-p", "Once upon a time", "-n", "12", "--temp", "0");
        var byAlias = CliRunner.InProcess("run", "-m", "stories-GGUF", "-p", "Once upon a time", "-n", "12", "--temp", "0");
        Assert.Equal(0, byPath.ExitCode);
        Assert.Equal(byPath.Stdout, byName.Stdout);
        Assert.Equal(byPath.Stdout, byAlias.Stdout);
        Assert.True(byPath.Stdout.Length > 10);

        r = CliRunner.InProcess("rm", "stories260K");
        Assert.Equal("stories260K: removed\n", r.Stdout);
        Assert.Empty(Directory.GetFiles(_root));
        r = CliRunner.InProcess("run", "-m", "stories-GGUF", "-n", "1"); // the alias (the plain name is also the built-in model's)
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("stories-GGUF: model file not found, nor a stored model of that name", r.Stderr);
    }

    [Fact]
    public void ImportChecksTheFileAndStoresItUnderAName()
    {
        var r = CliRunner.InProcess("import", TestPaths.Stories260K, "--name", "tiny");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.StartsWith("tiny: imported", r.Stdout);
        var m = new ModelStore(_root).Find("tiny")!;
        Assert.Equal(FakeHub.Sha256(File.ReadAllBytes(TestPaths.Stories260K)), m.Sha256);
        Assert.Equal("file:" + TestPaths.Stories260K, m.Source);
        Assert.Equal(File.ReadAllBytes(TestPaths.Stories260K), File.ReadAllBytes(Path.Combine(_root, "tiny.gguf")));

        string junk = TestPaths.TempFile("junk.gguf");
        File.WriteAllBytes(junk, new byte[100]);
        r = CliRunner.InProcess("import", junk);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("junk.gguf", r.Stderr);
        Assert.DoesNotContain('\n', r.Stderr.TrimEnd('\n'));
        Assert.Null(new ModelStore(_root).Find("junk"));
        Assert.Equal(2, Directory.GetFiles(_root).Length); // tiny.gguf and tiny.json only

        r = CliRunner.InProcess("import", Path.GetDirectoryName(junk)!);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("is a folder; import takes a .gguf file", r.Stderr);
        Assert.Contains("edgellm-convert", r.Stderr);
    }

    [Fact]
    public void PullMistakesAreOneLineErrors()
    {
        var r = CliRunner.InProcess("pull", "someone/stories-GGUF");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("expected hf:ORG/REPO[:FILE|:QUANT]", r.Stderr);
        r = CliRunner.InProcess("pull", "hf:someone/none");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("edgellm pull: error: hf:someone/none: not found (404): check the organisation, repository and file names\n", r.Stderr);
        r = CliRunner.InProcess("rm", "nothing");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("no stored model called 'nothing'", r.Stderr);
    }

    /// <summary>The Native AOT binary: source-generated JSON, HttpClient on loopback, the store, -m NAME.</summary>
    [Fact]
    public void PublishedBinaryPullsListsAndRunsByName()
    {
        var env = new Dictionary<string, string> { [ModelStore.Variable] = _root, [HubClient.EndpointVariable] = _hub.Endpoint };
        var r = CliRunner.PublishedWithEnv(env, "pull", "hf:someone/stories-GGUF:stories260K.gguf", "--name", "tiny");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.StartsWith("tiny: pulled hf:someone/stories-GGUF:stories260K.gguf", r.Stdout);
        // One line on stderr, no progress bar: stderr is not a terminal.
        Assert.StartsWith("edgellm pull: hf:someone/stories-GGUF:stories260K.gguf (", r.Stderr);
        Assert.DoesNotContain('\r', r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
        r = CliRunner.PublishedWithEnv(env, "list");
        Assert.Contains("tiny ", r.Stdout);
        Assert.Contains("(also: hf:someone/stories-GGUF:stories260K.gguf, someone/stories-GGUF, stories-GGUF)", r.Stdout);
        var byName = CliRunner.PublishedWithEnv(env, "run", "-m", "stories-GGUF", "-p", "Once upon a time", "-n", "10", "--temp", "0");
        var byPath = CliRunner.PublishedWithEnv(env, "run", "-m", TestPaths.Stories260K, "-p", "Once upon a time", "-n", "10", "--temp", "0");
        Assert.Equal(0, byName.ExitCode);
        Assert.Equal(byPath.Stdout, byName.Stdout);
    }
}
