using EdgeLlm.Backends;
using EdgeLlm.Cli;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// --device on machines without a usable GPU: with no driver at all, and with Debian's libcuda unpacked but no
/// device (cuInit returns 100). auto falls back to the CPU with one log line saying why and gives the CPU's
/// output; an explicit cuda is a one-line error and exit code 1.
/// </summary>
public class DeviceSelectionTests
{
    private const string NoDriver = "no CUDA driver (libcuda.so.1 not found)";
    private static readonly string[] Tokens = ["--tokens", "1,403,407,261,402", "--top", "5"];

    [Theory]
    [InlineData("auto", DeviceKind.Auto, 0)]
    [InlineData("cpu", DeviceKind.Cpu, 0)]
    [InlineData("cuda", DeviceKind.Cuda, 0)]
    [InlineData("CUDA:1", DeviceKind.Cuda, 1)]
    [InlineData(" cuda:12 ", DeviceKind.Cuda, 12)]
    public void DeviceSpecParses(string text, DeviceKind kind, int ordinal)
    {
        var spec = DeviceSpec.Parse(text);
        Assert.Equal(kind, spec.Kind);
        Assert.Equal(ordinal, spec.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("metal")]
    public void BadDeviceSpecsAreRejected(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => DeviceSpec.Parse(text));
        Assert.Contains("auto, cpu, cuda, cuda:N", e.Message);
    }

    [Fact]
    public void BadDeviceOptionIsAUsageError()
    {
        var r = CliRunner.InProcess(["logits", .. Tokens, "--device", "tpu"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--device 'tpu' is not one of auto, cpu, cuda, cuda:N", r.Stderr);
    }

    [Fact]
    public void LibraryDefaultIsTheCpu()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K);
        Assert.StartsWith("cpu", model.Backend.Name);
        Assert.Equal("device cpu (requested)", model.BackendDescription);
    }

    [NoDriverFact]
    public void AutoWithoutDriverFallsBackToTheCpu()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Device = "auto" });
        Assert.StartsWith("cpu", model.Backend.Name);
        Assert.Equal($"device cpu: CUDA not used: {NoDriver}", model.BackendDescription);
        Assert.False(model.BackendWarning); // no GPU here at all: nothing to warn about
    }

    [NoDriverFact]
    public void ExplicitCudaWithoutDriverThrowsOneLine()
    {
        var e = Assert.Throws<EdgeLlmException>(() => LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Device = "cuda" }));
        Assert.Equal($"--device cuda: {NoDriver}", e.Message);
        var e1 = Assert.Throws<EdgeLlmException>(() => LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Device = "cuda:1" }));
        Assert.Equal($"--device cuda:1: {NoDriver}", e1.Message);
    }

    [NoDriverFact]
    public void CliExplicitCudaWithoutDriverExitsOneWithOneLine()
    {
        var r = CliRunner.InProcess(["logits", .. Tokens, "--device", "cuda"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Equal($"edgellm logits: error: --device cuda: {NoDriver}", r.Stderr.TrimEnd('\n'));
    }

    [NoDriverFact]
    public void PublishedBinaryWithoutDriverLogsWhyAndMatchesTheCpu()
    {
        var cpu = CliRunner.Published(["logits", .. Tokens, "--device", "cpu"]);
        Assert.Equal(0, cpu.ExitCode);
        var auto = CliRunner.Published(["logits", .. Tokens, "-v"]); // --device auto is the default
        Assert.Equal(0, auto.ExitCode);
        Assert.Contains($"device cpu: CUDA not used: {NoDriver}", auto.Stderr);
        Assert.Equal(1, CountLines(auto.Stderr, "device "));
        Assert.Equal(cpu.Stdout, auto.Stdout);
        Assert.Equal(5, cpu.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        var explicitCuda = CliRunner.Published(["run", "-n", "4", "--device", "cuda"]);
        Assert.Equal(1, explicitCuda.ExitCode);
        Assert.Equal($"edgellm run: error: --device cuda: {NoDriver}", explicitCuda.Stderr.TrimEnd('\n'));
    }

    [UnpackedLibcudaFact]
    public void PublishedBinaryWithDriverButNoDeviceLogsCuInitAndMatchesTheCpu()
    {
        CudaTestEnvironment.RequireLibcuda();
        var env = new Dictionary<string, string> { ["LD_LIBRARY_PATH"] = CudaTestEnvironment.LibcudaDir };
        var cpu = CliRunner.Published(["logits", .. Tokens, "--device", "cpu"]);
        Assert.Equal(0, cpu.ExitCode);

        var auto = CliRunner.PublishedWithEnv(env, ["logits", .. Tokens, "-v", "--device", "auto"]);
        Assert.Equal(0, auto.ExitCode);
        Assert.Contains("device cpu: CUDA not used: CUDA driver ", auto.Stderr);
        Assert.Contains("but cuInit returned 100 (CUDA_ERROR_NO_DEVICE): no CUDA device", auto.Stderr);
        Assert.Equal(1, CountLines(auto.Stderr, "device "));
        Assert.Equal(cpu.Stdout, auto.Stdout);

        var explicitCuda = CliRunner.PublishedWithEnv(env, ["logits", .. Tokens, "--device", "cuda"]);
        Assert.Equal(1, explicitCuda.ExitCode);
        string line = explicitCuda.Stderr.TrimEnd('\n');
        Assert.DoesNotContain("\n", line);
        Assert.StartsWith("edgellm logits: error: --device cuda: CUDA driver ", line);
        Assert.EndsWith("cuInit returned 100 (CUDA_ERROR_NO_DEVICE): no CUDA device", line);
    }

    [NoDriverFact]
    public void DevicesCommandSaysWhyThereIsNoCuda()
    {
        var r = CliRunner.InProcess("devices");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal($"cpu: always available ({ImageSelection.Describe()})\ncuda: not available: {NoDriver}\n", r.Stdout.ReplaceLineEndings("\n"));
    }

    [UnpackedLibcudaFact]
    public void PublishedDevicesCommandWithDriverButNoDevice()
    {
        CudaTestEnvironment.RequireLibcuda();
        var env = new Dictionary<string, string> { ["LD_LIBRARY_PATH"] = CudaTestEnvironment.LibcudaDir };
        var r = CliRunner.PublishedWithEnv(env, "devices", "--bandwidth");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"^cpu: always available \(x86-64-v[34] image \((AVX-512|AVX2) kernels\)[^\n]*\)\ncuda: not available: CUDA driver \d+\.\d+ found \(libcuda\.so\.1\) but cuInit returned 100 \(CUDA_ERROR_NO_DEVICE\): no CUDA device\n$", r.Stdout);
    }

    [UnpackedLibcudaFact]
    public void DriverVariablePointsAtAnExplicitLibrary()
    {
        CudaTestEnvironment.RequireLibcuda();
        var env = new Dictionary<string, string> { ["EDGELLM_LIBCUDA"] = Path.Combine(CudaTestEnvironment.LibcudaDir, "libcuda.so.1") };
        var r = CliRunner.PublishedWithEnv(env, ["logits", .. Tokens, "-v"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("cuInit returned 100 (CUDA_ERROR_NO_DEVICE)", r.Stderr);
    }

    private static int CountLines(string text, string needle) =>
        text.Split('\n').Count(l => l.Contains(needle, StringComparison.Ordinal));
}
