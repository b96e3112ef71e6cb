using System.Text.Json;
using EdgeLlm.Cli.Store;

namespace EdgeLlm.Tests.Store;

/// <summary>`pull` against <see cref="FakeHub"/> on loopback: redirects, checksums, Range resume, dropped connections, errors.</summary>
public sealed class PullTests : IDisposable
{
    private readonly FakeHub _hub = new();
    private readonly string _root = Path.Combine(Path.GetTempPath(), "edgellm-tests", "store-" + Guid.NewGuid().ToString("N"));
    private readonly ModelStore _store;
    private static readonly byte[] Stories = File.ReadAllBytes(TestPaths.Stories260K);

    public PullTests()
    {
        _store = new ModelStore(_root);
        _hub.Repos["testorg/tiny-GGUF"] = new()
        {
            ["README.md"] = "# tiny\n"u8.ToArray(),
            ["tiny.Q8_0.gguf"] = Stories,
            ["tiny.Q4_K_M.gguf"] = Stories[..1000],
            ["tiny.Q4_K_S.gguf"] = Stories[..2000],
        };
    }

    public void Dispose()
    {
        _hub.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, true);
    }

    private HubClient Client(string? token = null) => new(_hub.Endpoint, token);

    private ModelManifest Pull(string spec, string? name = null, HubClient? client = null)
    {
        using var c = client ?? Client();
        return PullCommand.Pull(c, _store, HubSpec.Parse(spec), name, null, CancellationToken.None).GetAwaiter().GetResult().Manifest;
    }

    private bool PullAgain(string spec)
    {
        using var c = Client();
        return PullCommand.Pull(c, _store, HubSpec.Parse(spec), null, null, CancellationToken.None).GetAwaiter().GetResult().AlreadyPresent;
    }

    private string[] StoreFiles() => Directory.Exists(_root) ? Directory.GetFiles(_root) : [];

    [Fact]
    public void PullByQuantFollowsTheRedirectVerifiesAndStores()
    {
        var m = Pull("hf:testorg/tiny-GGUF:Q8_0");
        Assert.Equal("tiny.Q8_0", m.Name);
        Assert.Equal(FakeHub.Sha256(Stories), m.Sha256);
        Assert.Equal(Stories.Length, m.Size);
        Assert.Equal("hf:testorg/tiny-GGUF:tiny.Q8_0.gguf", m.Source);
        Assert.Contains("tiny-GGUF:Q8_0", m.Aliases);
        Assert.Equal(Stories, File.ReadAllBytes(_store.ModelPath("tiny.Q8_0")));
        // The manifest on disk reads back the same (source-generated JSON).
        var disk = JsonDocument.Parse(File.ReadAllBytes(_store.ManifestPath("tiny.Q8_0"))).RootElement;
        Assert.Equal(m.Sha256, disk.GetProperty("sha256").GetString());
        Assert.Equal(Stories.Length, disk.GetProperty("size").GetInt64());
        Assert.Equal(2, StoreFiles().Length); // NAME.gguf and NAME.json, no .partial left

        // The file list, the HEAD on resolve (302), then the CDN path the redirect named, without a Range.
        var reqs = _hub.Requests.ToArray();
        Assert.Equal(["GET /api/models/testorg/tiny-GGUF", "HEAD /testorg/tiny-GGUF/resolve/main/tiny.Q8_0.gguf", "GET /cdn/testorg/tiny-GGUF/tiny.Q8_0.gguf"],
            reqs.Select(r => r.Method + " " + r.Path).ToArray());
        Assert.False(reqs[2].Headers.ContainsKey("Range"));

        // Found by name and by alias; a second pull of the same file downloads nothing.
        Assert.Equal(_store.ModelPath("tiny.Q8_0"), _store.Resolve("TINY.q8_0"));
        Assert.Equal(_store.ModelPath("tiny.Q8_0"), _store.Resolve("testorg/tiny-GGUF:Q8_0"));
        int cdn = _hub.CdnRequests().Count;
        Assert.True(PullAgain("hf:testorg/tiny-GGUF:Q8_0"));
        Assert.Equal(cdn, _hub.CdnRequests().Count);
    }

    [Fact]
    public void ADroppedConnectionIsResumedWithRangeAndIfRange()
    {
        _hub.DropsLeft = 1;
        _hub.DropAfterBytes = 300_000;
        var m = Pull("hf:testorg/tiny-GGUF:tiny.Q8_0.gguf", name: "stories");
        Assert.Equal(Stories, File.ReadAllBytes(_store.ModelPath("stories")));
        var cdn = _hub.CdnRequests();
        Assert.Equal(2, cdn.Count);
        Assert.False(cdn[0].Headers.ContainsKey("Range"));
        Assert.Equal("bytes=300000-", cdn[1].Headers["Range"]);
        Assert.Equal(FakeHub.CdnETag(Stories), cdn[1].Headers["If-Range"]);
        Assert.Equal(FakeHub.Sha256(Stories), m.Sha256);
    }

    [Fact]
    public void APullThatKeepsBreakingLeavesThePartialAndTheNextPullResumesIt()
    {
        _hub.DropsLeft = 2;
        _hub.DropAfterBytes = 100_000;
        using (var c = new HubClient(_hub.Endpoint) { Attempts = 2 })
        {
            var e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF:Q8_0", client: c));
            Assert.Contains($"broke off at 200000 of {Stories.Length} bytes", e.Message);
            Assert.Contains("run the same pull again to resume", e.Message);
        }
        Assert.Equal(Stories[..200_000], File.ReadAllBytes(_store.PartialPath("tiny.Q8_0")));
        Assert.Null(_store.Resolve("tiny.Q8_0"));

        Pull("hf:testorg/tiny-GGUF:Q8_0");
        Assert.Equal("bytes=200000-", _hub.CdnRequests()[^1].Headers["Range"]);
        Assert.Equal(FakeHub.CdnETag(Stories), _hub.CdnRequests()[^1].Headers["If-Range"]);
        Assert.Equal(Stories, File.ReadAllBytes(_store.ModelPath("tiny.Q8_0")));
        Assert.False(File.Exists(_store.PartialPath("tiny.Q8_0")));
    }

    [Fact]
    public void APartialFileOfAnotherVersionIsDiscarded()
    {
        Directory.CreateDirectory(_root);
        File.WriteAllBytes(_store.PartialPath("tiny.Q8_0"), new byte[50_000]);
        File.WriteAllLines(HubClient.ResumeInfoPath(_store.PartialPath("tiny.Q8_0")), [FakeHub.Sha256("old version"u8.ToArray()), "\"old\""]);
        Pull("hf:testorg/tiny-GGUF:Q8_0");
        Assert.False(_hub.CdnRequests()[0].Headers.ContainsKey("Range"));
        Assert.Equal(Stories, File.ReadAllBytes(_store.ModelPath("tiny.Q8_0")));
        Assert.Equal(2, StoreFiles().Length);
    }

    [Fact]
    public void AWrongChecksumLeavesNothingInTheStore()
    {
        string wrong = FakeHub.Sha256("something else"u8.ToArray());
        _hub.PublishedShaOverride["tiny.Q8_0.gguf"] = wrong;
        var e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF:Q8_0"));
        Assert.Equal($"hf:testorg/tiny-GGUF:tiny.Q8_0.gguf: sha256 mismatch (expected {wrong}, got {FakeHub.Sha256(Stories)}); the download was deleted", e.Message);
        Assert.Empty(StoreFiles());
    }

    [Fact]
    public void AFileThatIsNotAGgufIsRefusedAfterTheChecksum()
    {
        _hub.Repos["testorg/tiny-GGUF"]["broken.gguf"] = new byte[4096];
        var e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF:broken.gguf"));
        Assert.Contains("not a usable GGUF", e.Message);
        Assert.Empty(StoreFiles());
    }

    [Fact]
    public void MissingRepositoriesAndFilesAre404Errors()
    {
        var e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/nope:Q8_0"));
        Assert.Equal("hf:testorg/nope: not found (404): check the organisation, repository and file names", e.Message);
        e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF:missing.gguf"));
        Assert.Equal("hf:testorg/tiny-GGUF:missing.gguf: not found (404): check the organisation, repository and file names", e.Message);
        Assert.Empty(StoreFiles());
    }

    [Fact]
    public void AGatedRepositoryNeedsTheTokenWhichNeverReachesTheCdn()
    {
        _hub.RequiredToken = "hf_secret";
        var e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF:Q8_0"));
        Assert.Contains("access denied (401)", e.Message);
        Assert.Contains("$HF_TOKEN", e.Message);
        e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF:Q8_0", client: Client("hf_wrong")));
        Assert.Contains("$HF_TOKEN may not read this repository", e.Message);

        Pull("hf:testorg/tiny-GGUF:Q8_0", client: Client("hf_secret"));
        Assert.Equal(Stories, File.ReadAllBytes(_store.ModelPath("tiny.Q8_0")));
        var cdn = _hub.CdnRequests();
        Assert.NotEmpty(cdn);
        Assert.All(cdn, r => Assert.False(r.Headers.ContainsKey("Authorization")));
        Assert.Contains(_hub.Requests, r => r.Path.StartsWith("/api/", StringComparison.Ordinal) && r.Headers.GetValueOrDefault("Authorization") == "Bearer hf_secret");
    }

    [Fact]
    public void AQuantThatMatchesNoneOrSeveralFilesListsTheCandidates()
    {
        var e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF:Q5_K_M"));
        Assert.Equal("hf:testorg/tiny-GGUF has no .gguf file for 'Q5_K_M' (candidates: tiny.Q8_0.gguf, tiny.Q4_K_M.gguf, tiny.Q4_K_S.gguf)", e.Message);
        e = Assert.Throws<EdgeLlmException>(() => Pull("hf:testorg/tiny-GGUF"));
        Assert.StartsWith("hf:testorg/tiny-GGUF has 3 .gguf files: name one", e.Message);
        Assert.Empty(_hub.CdnRequests());
    }
}
