using EdgeLlm.Backends.Cpu;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Layering;

/// <summary>
/// What a load works out once and everything else reads: the resolved options (context, batch, device, config), the
/// KV cache the backend makes, the seed, the tokenizer of a loaded model.
/// </summary>
public class LoadOnceTests
{
    [Fact]
    public void ResolvedOptionsTakeTheContextFromTheFileAndCapTheBatch()
    {
        using var file = GgufFile.Open(TestPaths.Stories260K);
        long trained = file.RequireInt("llama.context_length"); // 128 in stories260K
        var r = ResolvedOptions.Resolve(file, new BackendOptions());
        Assert.Equal(trained, r.ContextSize);
        Assert.Equal(BackendOptions.DefaultMaxBatch, r.MaxBatch);
        Assert.Equal(DeviceSpec.Cpu, r.Device);
        Assert.Equal(trained, r.Config.ContextLength);
        Assert.Same(file, r.File);

        var small = ResolvedOptions.Resolve(file, new BackendOptions { ContextSize = 40, Device = " CUDA:1 " });
        Assert.Equal(40, small.ContextSize);
        Assert.Equal(40, small.MaxBatch); // a batch never exceeds the context
        Assert.Equal(new DeviceSpec(DeviceKind.Cuda, 1), small.Device);

        Assert.Throws<ArgumentOutOfRangeException>(() => ResolvedOptions.Resolve(file, new BackendOptions { ContextSize = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ResolvedOptions.Resolve(file, new BackendOptions { MaxBatch = -1 }));
        Assert.Throws<ArgumentException>(() => ResolvedOptions.Resolve(file, new BackendOptions { Device = "tpu" }));
    }

    [Fact]
    public void ModelAndCacheFollowTheResolvedOptions()
    {
        using var file = GgufFile.Open(TestPaths.Stories260K);
        var r = ResolvedOptions.Resolve(file, new BackendOptions { ContextSize = 48, MaxBatch = 16, CacheTypeK = KvCacheType.F16 });
        using var model = new LlamaModel(file, new CpuBackend(1), r, ownsFile: false);
        Assert.Equal(48, model.ContextSize);
        Assert.Equal(48, model.Cache.Size);
        Assert.Equal(16, model.MaxBatch);
        Assert.Same(r.Config, model.Config);
        Assert.Equal((KvCacheType.F16, KvCacheType.F32), (model.Cache.KeyType, model.Cache.ValueType));
        var other = model.CreateCache();
        Assert.Equal((48, model.Config.KvDim, model.Config.LayerCount), (other.Size, other.KvDim, other.LayerCount));
        Assert.Equal((KvCacheType.F16, KvCacheType.F32), (other.KeyType, other.ValueType));

        using var second = GgufFile.Open(TestPaths.Stories260K);
        var e = Assert.Throws<ArgumentException>(() => new LlamaModel(second, new CpuBackend(1), r, ownsFile: false));
        Assert.Contains("resolved for another file", e.Message);
    }

    [Fact]
    public void LoaderUsesTheResolvedContext()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1 });
        Assert.Equal(model.File.RequireInt("llama.context_length"), model.ContextSize);
        Assert.Equal("device cpu (requested)", model.BackendDescription);
    }

    [Fact]
    public void SeedResolution()
    {
        Assert.Equal(42UL, Sampler.ResolveSeed(new SamplerOptions { Seed = 42 }));
        Assert.Equal(unchecked((ulong)-2L), Sampler.ResolveSeed(new SamplerOptions { Seed = -2 }));
        // -1 and llama.cpp's 0xFFFFFFFF draw a fresh seed each time (two equal 64-bit draws: chance 2^-64).
        Assert.NotEqual(Sampler.ResolveSeed(new SamplerOptions { Seed = -1 }), Sampler.ResolveSeed(new SamplerOptions { Seed = -1 }));
        Assert.NotEqual(Sampler.ResolveSeed(new SamplerOptions { Seed = 0xFFFFFFFF }), Sampler.ResolveSeed(new SamplerOptions { Seed = 0xFFFFFFFF }));
        // A sampler made from the pinned options starts from the resolved seed.
        var options = new SamplerOptions { Seed = -1, Temperature = 0.8f };
        ulong seed = Sampler.ResolveSeed(options);
        Assert.Equal(seed, new Sampler(10, options with { Seed = (long)seed }).Seed);
    }

    [Fact]
    public void TokenizerIsBuiltOncePerLoadedModel()
    {
        using var a = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1 });
        using var b = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1 });
        var ta = Tokenizer.For(a);
        Assert.Same(ta, Tokenizer.For(a));
        Assert.NotSame(ta, Tokenizer.For(b));
        const string text = "Once upon a time, there was a little dog.";
        Assert.Equal(Tokenizer.FromGguf(a.File).Encode(text, addBos: true), ta.Encode(text, addBos: true));
    }
}
