using EdgeLlm.Backends.Cuda;

namespace EdgeLlm.Tests.Cuda;

/// <summary>The compile cache key covers every input of the build, and the cache round-trips files safely.</summary>
public class KernelCacheTests
{
    private static readonly (string, string)[] Headers = [("common.cuh", "#pragma once\n")];
    private static readonly string[] Options = KernelCompiler.Options(87, cubin: true);

    private static ulong Key(string file = "a.cu", string source = "src", (string, string)[]? headers = null, string[]? options = null,
        int arch = 87, bool cubin = true, int driver = 12020, (int, int)? nvrtc = null) =>
        KernelCache.Key(file, source, headers ?? Headers, options ?? Options, arch, cubin, driver, nvrtc ?? (11, 8));

    [Fact]
    public void SameInputsGiveTheSameKey() => Assert.Equal(Key(), Key());

    [Fact]
    public void EveryInputChangesTheKey()
    {
        var keys = new[]
        {
            Key(),
            Key(file: "b.cu"),
            Key(source: "src "),
            Key(headers: [("common.cuh", "#pragma once\n// changed\n")]),
            Key(headers: [("other.cuh", "#pragma once\n")]),
            Key(headers: []),
            Key(options: KernelCompiler.Options(87, cubin: true).Append("-lineinfo").ToArray()),
            Key(options: KernelCompiler.Options(90, cubin: true)),
            Key(arch: 90),
            Key(cubin: false),
            Key(driver: 12040),
            Key(nvrtc: (12, 4)),
        };
        Assert.Equal(keys.Length, keys.Distinct().Count());
    }

    [Fact]
    public void PartsCannotBeShiftedBetweenFields()
    {
        // Length prefixes: moving text from the source to the file name is a different key.
        Assert.NotEqual(Key(file: "a.cu", source: "xsrc"), Key(file: "a.cux", source: "src"));
    }

    [Fact]
    public void OptionsNameTheArchitectureAndOutputKind()
    {
        Assert.Contains("--gpu-architecture=sm_87", KernelCompiler.Options(87, cubin: true));
        Assert.Contains("--gpu-architecture=compute_90", KernelCompiler.Options(90, cubin: false));
    }

    [Fact]
    public void WriteThenReadRoundTrips()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        var cache = new KernelCache(Path.Combine(dir, "kernels"));
        ulong key = Key();
        Assert.Null(cache.TryRead(key, cubin: true));
        byte[] image = [0x7F, (byte)'E', (byte)'L', (byte)'F', 1, 2, 3];
        Assert.True(cache.TryWrite(key, cubin: true, image));
        Assert.Equal(image, cache.TryRead(key, cubin: true));
        Assert.Null(cache.TryRead(key, cubin: false)); // PTX and cubin never mix
        Assert.Equal($"{key:x16}.cubin", Path.GetFileName(cache.PathFor(key, cubin: true)));
        Assert.Empty(Directory.GetFiles(cache.Directory, "*.tmp"));
    }

    [Fact]
    public void AnUnwritableCacheIsNotAnError()
    {
        string file = TestPaths.TempFile("not-a-dir");
        File.WriteAllText(file, "x");
        var cache = new KernelCache(Path.Combine(file, "kernels")); // a folder under a regular file cannot exist
        Assert.False(cache.TryWrite(Key(), cubin: true, [1, 2, 3]));
        Assert.Null(cache.TryRead(Key(), cubin: true));
    }

    [Fact]
    public void DefaultFolderFollowsTheEnvironment()
    {
        Assert.EndsWith(Path.Combine("edgellm", "kernels"), KernelCache.Default().Directory.TrimEnd('/'), StringComparison.Ordinal);
    }
}
