using System.Collections.Concurrent;
using EdgeLlm.Backends.Cuda;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// NVRTC's output for the kernel files, compiled once per test run: several test classes compile the same file for
/// the same architecture with the same options (kernels/gemm.cu for sm_80 by three of them), and NVRTC takes seconds
/// a file. The key is everything NVRTC sees: the file name, its source text, the headers' names and texts, the options
/// (which name the architecture and PTX or cubin). Thread-safe (xunit runs classes in parallel): a second test asking
/// while the first compiles waits for that compile. A failed compile is not kept: the test that asked gets NVRTC's
/// <see cref="KernelCompileException"/>, and the next one to ask compiles again (and fails on its own). Each caller gets
/// its own copy of the image. Tests of the compile error path call <see cref="KernelCompiler"/> directly.
/// </summary>
internal static class KernelCompileMemo
{
    private static readonly ConcurrentDictionary<string, Lazy<CompiledKernel>> Done = new(StringComparer.Ordinal);

    /// <summary>The option ptxas reads to print each entry's registers, spills, stack frame and shared memory.</summary>
    public const string PtxasVerbose = "--ptxas-options=-v";

    /// <summary>Kernel file <paramref name="file"/> with the backend's options (<see cref="KernelCompiler.Options"/>).</summary>
    public static CompiledKernel Compile(string file, int arch, bool cubin) =>
        Compile(file, KernelSources.Get(file), KernelSources.HeaderFiles, KernelCompiler.Options(arch, cubin), arch, cubin);

    /// <summary>The cubin of kernel file <paramref name="file"/> with ptxas's per-entry figures in its log.</summary>
    public static CompiledKernel CubinWithPtxasFigures(string file, int arch) =>
        Compile(file, KernelSources.Get(file), KernelSources.HeaderFiles, KernelCompiler.Options(arch, cubin: true).Append(PtxasVerbose).ToArray(), arch, cubin: true);

    public static CompiledKernel Compile(string file, string source, IReadOnlyList<(string Name, string Text)> headers,
        IReadOnlyList<string> options, int arch, bool cubin)
    {
        var key = new System.Text.StringBuilder();
        key.Append(file).Append('\0').Append(arch).Append('\0').Append(cubin).Append('\0');
        foreach (string o in options) key.Append(o).Append('\0');
        foreach (var (name, text) in headers) key.Append(name).Append('\0').Append(text).Append('\0');
        key.Append(source);
        string k = key.ToString();
        var lazy = Done.GetOrAdd(k, _ => new Lazy<CompiledKernel>(
            () => KernelCompiler.Compile(file, source, headers, options, arch, cubin), LazyThreadSafetyMode.ExecutionAndPublication));
        CompiledKernel compiled;
        try
        {
            compiled = lazy.Value;
        }
        catch
        {
            Done.TryRemove(new KeyValuePair<string, Lazy<CompiledKernel>>(k, lazy));
            throw;
        }
        return compiled with { Image = (byte[])compiled.Image.Clone() };
    }
}
