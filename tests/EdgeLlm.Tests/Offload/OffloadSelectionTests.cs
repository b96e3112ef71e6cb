using EdgeLlm.Backends;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Offload;

/// <summary>Backend selection with --gpu-layers where CUDA is not used: the CPU, and the log line says the flag was ignored.</summary>
public class OffloadSelectionTests
{
    [Fact]
    public void CpuDevice_IgnoresGpuLayers_AndSaysSo()
    {
        using var file = GgufFile.Open(TestPaths.Stories260K);
        var s = BackendSelector.Select(new BackendOptions { Device = "cpu", GpuLayers = "3", Threads = 1 }, file);
        using (s.Backend)
        {
            Assert.IsType<CpuBackend>(s.Backend);
            Assert.False(s.IsCuda);
            Assert.Equal("device cpu (requested); --gpu-layers 3 ignored", s.Description);
        }
        var auto = BackendSelector.Select(new BackendOptions { Device = "cpu", Threads = 1 }, file);
        using (auto.Backend) Assert.Equal("device cpu (requested)", auto.Description);
    }

    [Fact]
    public void NoCuda_AutoDevice_FallsBackToTheCpu_NamingTheFlag()
    {
        using var file = GgufFile.Open(TestPaths.Stories260K);
        var s = BackendSelector.Select(new BackendOptions { Device = "auto", GpuLayers = "all", Threads = 1 }, file);
        using (s.Backend)
        {
            if (s.IsCuda) return; // a machine with a usable GPU: the CUDA tests cover it
            Assert.IsType<CpuBackend>(s.Backend);
            Assert.StartsWith("device cpu: CUDA not used: ", s.Description);
            Assert.EndsWith("; --gpu-layers all ignored", s.Description);
        }
    }

    [Fact]
    public void BadGpuLayers_IsRefused()
    {
        using var file = GgufFile.Open(TestPaths.Stories260K);
        var e = Assert.Throws<EdgeLlmException>(() => BackendSelector.Select(new BackendOptions { Device = "cpu", GpuLayers = "most" }, file));
        Assert.Equal("--gpu-layers 'most' is not auto, all or a number of layers", e.Message);
    }
}
