using System.Text;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// Every kernel file compiles with NVRTC for the oldest supported architecture (sm_61, the first with dp4a) and
/// the two targets the project ships for, Jetson Orin (sm_87) and H100 (sm_90), to cubins, so NVRTC's internal ptxas runs too (unresolved externs such as NVRTC 11.8's
/// __dp4a fail there, not at PTX time), with ptxas's -v figures, which must name every entry point (the backend's options
/// without -v: <see cref="PublishedBinaryCompilesEveryKernel"/>). No GPU is involved. The compiles go through
/// <see cref="KernelCompileMemo"/>, shared with the other NVRTC tests of the run; the error path compiles for real.
/// </summary>
public class KernelCompileTests
{
    public static TheoryData<string, int> FilesAndArchs()
    {
        var data = new TheoryData<string, int>();
        foreach (string file in KernelFilesOnDisk())
            foreach (int arch in new[] { CudaProbe.MinArch, 87, 90 })
                data.Add(file, arch);
        return data;
    }

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (string file in KernelFilesOnDisk()) data.Add(file);
        return data;
    }

    private static string[] KernelFilesOnDisk()
    {
        var files = Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "kernels"), "*.cu").Select(Path.GetFileName).ToArray();
        Array.Sort(files, StringComparer.Ordinal);
        return files!;
    }

    [NvrtcTheory]
    [MemberData(nameof(FilesAndArchs))]
    public void KernelFileCompilesToCubin(string file, int arch)
    {
        CudaTestEnvironment.RequireNvrtc();
        CompiledKernel k;
        try
        {
            // with ptxas's figures (-v changes no code, only the log): the same cubin the ptxas-figure tests of
            // PrefillKernelCompileTests, FlashDecodingTests and PackedMatVecTests read, compiled once a run
            k = KernelCompileMemo.CubinWithPtxasFigures(file, arch);
        }
        catch (KernelCompileException e)
        {
            Assert.Fail($"{e.Message}\n--- NVRTC log ---\n{e.Log}");
            throw;
        }
        Assert.True(k.IsCubin);
        Assert.True(k.Image.Length > 1000, $"{file}: a {k.Image.Length}-byte cubin is too small to hold its kernels");
        Assert.Equal(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }, k.Image[..4]); // a cubin is an ELF file
        Assert.True(CudaKernels.EntryPoints.TryGetValue(file, out var names), $"CudaKernels.EntryPoints does not list {file}");
        foreach (string name in names!) // ptxas compiled every entry point for this architecture
            Assert.True(k.Log.Contains($"Compiling entry function '{name}' for 'sm_{arch}'", StringComparison.Ordinal), $"{file}: ptxas did not report {name} for sm_{arch}");
    }

    /// <summary>
    /// The PTX of each file (for the oldest supported architecture) declares every entry point CudaKernels looks
    /// up, and calls no external function.
    /// </summary>
    [NvrtcTheory]
    [MemberData(nameof(Files))]
    public void PtxDeclaresEveryEntryPointAndNoExterns(string file)
    {
        CudaTestEnvironment.RequireNvrtc();
        var k = KernelCompileMemo.Compile(file, CudaProbe.MinArch, cubin: false);
        Assert.False(k.IsCubin);
        string ptx = Encoding.UTF8.GetString(k.Image).TrimEnd('\0');
        Assert.Contains($".target sm_{CudaProbe.MinArch}", ptx);
        Assert.True(CudaKernels.EntryPoints.TryGetValue(file, out var names), $"CudaKernels.EntryPoints does not list {file}");
        foreach (string name in names!)
            Assert.True(ptx.Contains($".entry {name}(", StringComparison.Ordinal), $"{file}: no '.entry {name}' in the PTX");
        int entries = ptx.Split(".entry ").Length - 1;
        Assert.Equal(names!.Length, entries);
        Assert.DoesNotContain(".extern .func", ptx);
    }

    [NvrtcFact]
    public void IntegerDotsUseDp4aInstructions()
    {
        CudaTestEnvironment.RequireNvrtc();
        var k = KernelCompileMemo.Compile("matmul.cu", 87, cubin: false);
        string ptx = Encoding.UTF8.GetString(k.Image);
        Assert.Contains("dp4a.s32.s32", ptx);
        Assert.DoesNotContain("__dp4a", ptx);
    }

    [NvrtcFact]
    public void CompileErrorCarriesTheNvrtcLog()
    {
        CudaTestEnvironment.RequireNvrtc();
        const string bad = "#include \"common.cuh\"\nextern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }\n";
        var e = Assert.Throws<KernelCompileException>(() => KernelCompiler.Compile("broken.cu", bad, 87, cubin: true));
        Assert.Contains("undefined_name", e.Log);
        Assert.Contains("broken.cu", e.Log);
        Assert.Contains("NVRTC_ERROR_COMPILATION", e.Message);
        Assert.Contains("sm_87", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    /// <summary>
    /// <see cref="KernelCompileMemo"/> keeps no failure (each test that asks for a broken file gets a compile of its own:
    /// a new exception with NVRTC's log) and hands each caller its own image.
    /// </summary>
    [NvrtcFact]
    public void TheCompileMemoKeepsNoFailureAndHandsOutCopies()
    {
        CudaTestEnvironment.RequireNvrtc();
        const string bad = "extern \"C\" __global__ void broken_memo(float* x) { x[0] = undefined_memo_name; }\n";
        var options = KernelCompiler.Options(87, cubin: false);
        var first = Assert.Throws<KernelCompileException>(() => KernelCompileMemo.Compile("broken_memo.cu", bad, [], options, 87, cubin: false));
        var second = Assert.Throws<KernelCompileException>(() => KernelCompileMemo.Compile("broken_memo.cu", bad, [], options, 87, cubin: false));
        Assert.NotSame(first, second);
        Assert.Contains("undefined_memo_name", second.Log);
        const string good = "extern \"C\" __global__ void fine_memo(float* x) { x[0] = 1.0f; }\n";
        var a = KernelCompileMemo.Compile("fine_memo.cu", good, [], options, 87, cubin: false);
        byte firstByte = a.Image[0];
        a.Image[0] ^= 0xFF;
        var b = KernelCompileMemo.Compile("fine_memo.cu", good, [], options, 87, cubin: false);
        Assert.Equal(firstByte, b.Image[0]);
        Assert.Contains(".entry fine_memo(", Encoding.UTF8.GetString(b.Image));
    }

    [NvrtcFact]
    public void NvrtcReportsItsVersionAndTheShippedArchitectures()
    {
        CudaTestEnvironment.RequireNvrtc();
        var (major, minor) = KernelCompiler.Version();
        Assert.True(major >= 11, $"NVRTC {major}.{minor} is older than the 11.x the CI installs");
        var archs = KernelCompiler.SupportedArchs();
        Assert.NotNull(archs);
        Assert.Contains(87, archs!);
        Assert.Contains(90, archs!);
        Assert.True(KernelCompiler.CanEmitCubin);
    }

    /// <summary>The Native AOT binary finds its embedded kernels and drives NVRTC through the same bindings.</summary>
    [NvrtcFact]
    public void PublishedBinaryCompilesEveryKernel()
    {
        CudaTestEnvironment.RequireNvrtc();
        // About 30 s of CPU for NVRTC (the files compile in parallel); xunit runs other collections beside it.
        var r = Cli.CliRunner.PublishedWithin(600, [], "", null, null, "devices", "--compile", "87");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("NVRTC ", lines[0]);
        Assert.EndsWith("sm_87", lines[0]);
        Assert.Equal(KernelFilesOnDisk().Select(f => $"kernels/{f}:").ToArray(), lines.Skip(1).Select(l => l.Split(' ')[0]).ToArray());
        Assert.All(lines.Skip(1), l => Assert.EndsWith("byte cubin", l));
    }

    [Fact]
    public void EmbeddedSourcesAreTheKernelsFolder()
    {
        var onDisk = KernelFilesOnDisk();
        Assert.Equal(onDisk, KernelSources.Files.Select(f => f.Name).ToArray());
        foreach (var (name, text) in KernelSources.Files)
            Assert.Equal(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "kernels", name)), text);
        Assert.Equal(["common.cuh"], KernelSources.HeaderFiles.Select(h => h.Name).ToArray());
        Assert.Equal(onDisk, CudaKernels.EntryPoints.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
    }

    [Fact]
    public void EveryWeightTypeTheBackendAcceptsHasKernels()
    {
        var matmul = CudaKernels.EntryPoints["matmul.cu"];
        var getRows = CudaKernels.EntryPoints["get_rows.cu"];
        foreach (var t in Enum.GetValues<GgmlType>())
        {
            if (!CudaKernels.Supports(t)) continue;
            string s = CudaKernels.Suffix(t)!;
            Assert.Contains($"matvec_{s}_t1", matmul);
            Assert.Contains($"matvec_{s}_t8", matmul);
            Assert.Contains($"get_rows_{s}", getRows);
        }
        Assert.Equal(CudaKernels.WeightTypes, Enum.GetValues<GgmlType>().Where(CudaKernels.Supports).OrderBy(t => Array.IndexOf(CudaKernels.WeightTypes, t)).ToArray());
        Assert.Equal(15, CudaKernels.WeightTypes.Length);
    }
}
