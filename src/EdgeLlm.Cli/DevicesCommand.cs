using System.Globalization;
using EdgeLlm.Backends;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Compute;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm devices`: what --device auto would find. Lists the CUDA devices and how the kernels would be built
/// for them, or the one reason CUDA cannot be used here; with --bandwidth also builds the kernels and measures
/// each device's device-to-device copy bandwidth (the yardstick of the decode benchmarks).
/// </summary>
public sealed class DevicesCommand : Command
{
    private static readonly OptionSpec Bandwidth = new(["--bandwidth"], false, null, "build the kernels and measure each device's copy bandwidth");
    private static readonly OptionSpec Compile = new(["--compile"], true, "SM", "only compile every kernel with NVRTC to a cubin for sm_SM (e.g. 87); needs no GPU");

    public override string Name => "devices";
    public override string Summary => "list the CUDA devices --device can use, or say why there are none";
    public override string Usage => "devices [--bandwidth] [--compile SM]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Bandwidth, Compile, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        var inv = CultureInfo.InvariantCulture;
        if (args.Has("--compile")) return CompileAll(args.GetInt("--compile", 0, 30, 1000), ctx);
        ctx.Out.WriteLine($"cpu: always available ({ImageSelection.Describe()})");
        if (!CudaProbe.TryGetDevice(0, out _, out string why))
        {
            ctx.Out.WriteLine($"cuda: not available: {why}");
            return 0;
        }
        CudaDriver.Check(CudaDriver.cuDeviceGetCount(out int count), "cuDeviceGetCount");
        for (int i = 0; i < count; i++)
        {
            if (!CudaProbe.TryGetDevice(i, out var dev, out why))
            {
                ctx.Out.WriteLine($"cuda:{i}: not usable: {why}");
                continue;
            }
            if (!CudaProbe.TryGetTarget(dev!, out var target, out why))
            {
                ctx.Out.WriteLine($"{dev}: not usable: {why}");
                continue;
            }
            ctx.Out.WriteLine(string.Create(inv, $"{dev}: usable; kernels {target}; NVRTC {CudaLibraries.NvrtcPath}; peak memory bandwidth {dev!.TheoreticalBandwidthGBs:F0} GB/s"));
            if (!args.Has("--bandwidth")) continue;
            using var backend = new CudaBackend(dev, target, KernelCache.Default());
            backend.Prepare(new Compute.BackendLimits(1, 32, 1, 2, 2));
            var (free, _) = backend.MemoryInfo();
            double gbs = backend.MeasureCopyBandwidth(Math.Min(1L << 30, free / 4 / 4096 * 4096));
            ctx.Out.WriteLine(string.Create(inv,
                $"cuda:{i} device-to-device copy bandwidth: {gbs:F1} GB/s (kernels: {backend.KernelsCompiled} compiled, {backend.KernelCacheHits} from {KernelCache.Default().Directory})"));
        }
        return 0;
    }

    /// <summary>Compiles every embedded kernel file for one architecture: NVRTC and the sources checked, no GPU used.</summary>
    private static int CompileAll(int arch, CliContext ctx)
    {
        if (!CudaLibraries.TryLoadNvrtc())
            throw new EdgeLlmException($"no NVRTC (none of {string.Join(", ", CudaLibraries.NvrtcSonames)} found)");
        var (major, minor) = KernelCompiler.Version();
        ctx.Out.WriteLine($"NVRTC {major}.{minor} ({CudaLibraries.NvrtcPath}), sm_{arch}");
        // The files are independent NVRTC programs: compile them on every core, print in file order.
        var files = KernelSources.Files;
        var sizes = new int[files.Count];
        var errors = new Exception?[files.Count];
        Parallel.For(0, files.Count, i =>
        {
            try { sizes[i] = KernelCompiler.Compile(files[i].Name, files[i].Text, arch, cubin: true).Image.Length; }
            catch (Exception e) { errors[i] = e; }
        });
        foreach (var e in errors)   // the first failing file in file order, as itself (one-line error), not wrapped
            if (e is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        for (int i = 0; i < files.Count; i++)
            ctx.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"kernels/{files[i].Name}: {sizes[i]} byte cubin"));
        return 0;
    }
}
