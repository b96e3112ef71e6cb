using EdgeLlm.Cli;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Cli;

/// <summary>Issue 16.2: stories260K inside the binary, used with no file anywhere.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class EmbeddedModelTests
{
    [Fact]
    public void EmbeddedBytesAreTheRepositoryModel()
    {
        Assert.True(EmbeddedModel.Present);
        Assert.Equal(new FileInfo(TestPaths.Stories260K).Length, EmbeddedModel.Size);
        using var embedded = EmbeddedModel.Open();
        using var file = GgufFile.Open(TestPaths.Stories260K);
        Assert.Equal(EmbeddedModel.Marker, embedded.Path);
        Assert.True(embedded.InMemory);
        Assert.Equal(file.Keys, embedded.Keys);
        Assert.Equal(file.Tensors.Count, embedded.Tensors.Count);
        foreach (var t in file.Tensors)
        {
            var a = file.GetTensor(t);
            var b = embedded.GetTensor(t.Name)!.Value;
            Assert.True(a.Span.SequenceEqual(b.Span), t.Name);
        }
    }

    [Fact]
    public unsafe void EmbeddedTensorDataIsAligned()
    {
        using var embedded = EmbeddedModel.Open();
        Assert.Equal(0, (long)embedded.BasePointer % (2L << 20));    // the buffer starts on a 2 MiB boundary
        foreach (var t in embedded.Tensors)
            Assert.Equal(0, (long)(embedded.BasePointer + embedded.DataOffset + t.Offset) % embedded.Alignment);
    }

    [Fact]
    public void FromStreamKeepsTheLoaderChecks()
    {
        byte[] good = File.ReadAllBytes(TestPaths.Stories260K);
        // Cut inside the tensor data: the tensor table points past the end.
        var cut = Assert.Throws<GgufFormatException>(() => GgufFile.FromStream("cut.gguf", new MemoryStream(good, 0, good.Length - 100), good.Length - 100));
        Assert.Contains("cut.gguf", cut.Message);
        // A stream shorter than it claims.
        var shortStream = Assert.Throws<IOException>(() => GgufFile.FromStream("short.gguf", new MemoryStream(good, 0, 1000), good.Length));
        Assert.Equal($"short.gguf: the data ended at byte 1000 of {good.Length}", shortStream.Message);
        byte[] bad = (byte[])good.Clone();
        bad[0] = (byte)'X';
        var magic = Assert.Throws<GgufFormatException>(() => GgufFile.FromStream("bad.gguf", new MemoryStream(bad), bad.Length));
        Assert.Contains("bad.gguf", magic.Message);
        Assert.Contains("magic", magic.Message);
        Assert.Throws<GgufFormatException>(() => GgufFile.FromStream("empty.gguf", new MemoryStream(), 0));
    }

    [Fact]
    public void DefaultAndNamedModelIsTheEmbeddedOne()
    {
        Assert.Equal(EmbeddedModel.Marker, ModelPaths.Resolve(null));
        Assert.Equal(EmbeddedModel.Marker, ModelPaths.Resolve("stories260K"));
        Assert.Equal(EmbeddedModel.Marker, ModelPaths.Resolve("stories260K.gguf"));
        Assert.Equal(TestPaths.Stories260K, ModelPaths.Resolve(TestPaths.Stories260K));
        var r = CliRunner.InProcess("info");
        Assert.StartsWith("file:          builtin:stories260K\nsize:          1,185,376 bytes\n", r.Stdout);
    }

    [Fact]
    public void PublishedBinaryCopiedAloneRunsTheEmbeddedModel()
    {
        // The binary alone in an empty folder, run from another empty folder, with an empty environment.
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        string bin = Path.Combine(dir, "bin", "edgellm");
        Directory.CreateDirectory(Path.GetDirectoryName(bin)!);
        File.Copy(CliRunner.PublishedBinary, bin);
        File.SetUnixFileMode(bin, File.GetUnixFileMode(CliRunner.PublishedBinary));
        string cwd = Path.Combine(dir, "elsewhere");
        Directory.CreateDirectory(cwd);
        var r = CliRunner.PublishedWith([], "", cwd, bin, "run", "-n", "48", "--temp", "0");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(CommandTests.ReferenceText(48) + "\n", r.Stdout);
        var named = CliRunner.PublishedWith([], "", cwd, bin, "run", "-m", "stories260K", "-n", "48", "--temp", "0");
        Assert.Equal(r.Stdout, named.Stdout);
        Assert.Equal(["edgellm"], Directory.GetFiles(Path.GetDirectoryName(bin)!).Select(Path.GetFileName));
        Assert.Empty(Directory.GetFileSystemEntries(cwd));
    }
}
