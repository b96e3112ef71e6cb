using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Gguf;

/// <summary>
/// The model file read into memory (--no-mmap, and the automatic default for files that fit) against the mapped
/// file: same bytes, same logits, same errors for bad files, and the CLI switches.
/// </summary>
public sealed unsafe class GgufLoadModeTests
{
    private static readonly GgufLoadOptions Read = new() { Mode = GgufLoadMode.Read };
    private static readonly GgufLoadOptions Map = new() { Mode = GgufLoadMode.Map };

    [Fact]
    public void ReadInHoldsTheSameTensorBytesAsTheMapping()
    {
        using var mapped = GgufFile.Open(TestPaths.Stories260K, Map);
        using var read = GgufFile.Open(TestPaths.Stories260K, Read);
        Assert.False(mapped.InMemory);
        Assert.True(read.InMemory);
        Assert.Equal(mapped.Keys, read.Keys);
        Assert.Equal(mapped.Tensors.Count, read.Tensors.Count);
        foreach (var info in mapped.Tensors)
        {
            var a = mapped.GetTensor(info);
            var b = read.GetTensor(info.Name)!.Value;
            Assert.NotEqual((nint)a.Data, (nint)b.Data);
            Assert.True(new ReadOnlySpan<byte>(a.Data, checked((int)a.ByteLength)).SequenceEqual(new ReadOnlySpan<byte>(b.Data, checked((int)b.ByteLength))), info.Name);
        }
        Assert.Equal(0, (long)(nint)read.GetTensor(read.Tensors[0]).Data % 32); // the data section stays aligned
    }

    [Fact]
    public void ReadInAndMappedModelsGiveIdenticalLogits()
    {
        int[] tokens = { 1, 403, 407, 261, 378 };
        float[] Logits(GgufLoadOptions load)
        {
            using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 2, Load = load });
            var logits = new float[tokens.Length * model.VocabSize];
            model.Forward(tokens, 0, logits, allLogits: true);
            return logits;
        }
        float[] mapped = Logits(Map), read = Logits(Read);
        Assert.Equal(mapped, read);
        Assert.Contains(mapped, v => v != 0);
    }

    [Fact]
    public void ATruncatedFileFailsTheSameWayReadIn()
    {
        byte[] all = File.ReadAllBytes(TestPaths.Stories260K);
        string path = TestPaths.TempFile("truncated-readin.gguf");
        File.WriteAllBytes(path, all.AsSpan(0, all.Length - 1000).ToArray());
        var mapped = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path, Map));
        var read = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path, Read));
        Assert.Equal(mapped.Message, read.Message);
        Assert.Contains(path, read.Message);
    }

    [Fact]
    public void AMissingFileIsNamed()
    {
        string path = TestPaths.TempFile("no-such-model.gguf");
        var e = Assert.Throws<FileNotFoundException>(() => GgufFile.Open(path, Read));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void AutoReadsInWhatFitsInHalfTheAvailableMemoryAndMapsTheRest()
    {
        var auto = GgufLoadOptions.Default;
        Assert.Equal(GgufLoadMode.Auto, auto.Mode);
        Assert.False(auto.ReadsIn(long.MaxValue / 2));
        Assert.True(Read.ReadsIn(long.MaxValue / 2));
        Assert.False(Map.ReadsIn(1));
        if (OperatingSystem.IsLinux())
        {
            Assert.True(auto.ReadsIn(1 << 20));
            using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1 });
            Assert.True(model.File.InMemory);
        }
    }

    [Fact]
    public void LockIsHonouredOrExplained()
    {
        using var f = GgufFile.Open(TestPaths.Stories260K, new GgufLoadOptions { Mode = GgufLoadMode.Read, LockInMemory = true });
        if (f.Locked) Assert.Null(f.LockError);
        else Assert.Matches("could not lock .* GiB in RAM", f.LockError!);
    }

    [Fact]
    public void CliRejectsMmapWithNoMmap()
    {
        var r = CliRunner.InProcess("run", "--mmap", "--no-mmap", "-n", "4", "-p", "Once");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--mmap and --no-mmap", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void CliRunsTheSameTextMappedAndReadIn()
    {
        var mapped = CliRunner.InProcess("run", "--mmap", "-n", "24", "--temp", "0", "-p", "Once upon a time", "-t", "1");
        var read = CliRunner.InProcess("run", "--no-mmap", "--mlock", "-n", "24", "--temp", "0", "-p", "Once upon a time", "-t", "1");
        Assert.Equal(0, mapped.ExitCode);
        Assert.Equal(0, read.ExitCode);
        Assert.Equal(mapped.Stdout, read.Stdout);
        Assert.True(mapped.Stdout.Trim().Length > 20, mapped.Stdout);
    }
}
