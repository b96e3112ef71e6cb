using System.Runtime.InteropServices;
using System.Text;
using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Backends.Cuda;

/// <summary>What NVRTC produced for one kernel file: a cubin (machine code for one sm_XX) or PTX (JIT-compiled by the driver).</summary>
public sealed record CompiledKernel(string FileName, byte[] Image, bool IsCubin, int Arch, string Log);

/// <summary>
/// Compiles kernel files with NVRTC. <see cref="Options"/> fixes the flags (so the cache key can include them),
/// <c>--gpu-architecture=sm_XX</c> makes NVRTC run ptxas and return a cubin, <c>compute_XX</c> returns PTX.
/// A failed compile throws <see cref="KernelCompileException"/> carrying NVRTC's log.
/// </summary>
public static unsafe class KernelCompiler
{
    /// <summary>NVRTC's version (e.g. 11.8); NVRTC must be loaded (<see cref="CudaLibraries.TryLoadNvrtc"/>).</summary>
    public static (int Major, int Minor) Version()
    {
        Nvrtc.Check(Nvrtc.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>True if this NVRTC can return cubins (nvrtcGetCUBIN, NVRTC 11.1 and later).</summary>
    public static bool CanEmitCubin => CudaLibraries.NvrtcHas("nvrtcGetCUBIN");

    /// <summary>The sm_XX values (XX = 10 * major + minor) this NVRTC compiles for; null if it cannot say (before 11.2).</summary>
    public static int[]? SupportedArchs()
    {
        if (!CudaLibraries.NvrtcHas("nvrtcGetSupportedArchs")) return null;
        Nvrtc.Check(Nvrtc.nvrtcGetNumSupportedArchs(out int n), "nvrtcGetNumSupportedArchs");
        var archs = new int[n];
        fixed (int* p = archs) Nvrtc.Check(Nvrtc.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return archs;
    }

    /// <summary>The NVRTC options for an architecture: a real one (cubin, ptxas runs) or a virtual one (PTX).</summary>
    public static string[] Options(int arch, bool cubin) =>
    [
        $"--gpu-architecture={(cubin ? "sm" : "compute")}_{arch}",
        "--std=c++14",
        "-DEDGELLM_ARCH=" + arch,
    ];

    /// <summary>Compiles one kernel file (with every embedded header available to #include) for <paramref name="arch"/>.</summary>
    public static CompiledKernel Compile(string fileName, string source, int arch, bool cubin) =>
        Compile(fileName, source, KernelSources.HeaderFiles, Options(arch, cubin), arch, cubin);

    public static CompiledKernel Compile(string fileName, string source, IReadOnlyList<(string Name, string Text)> headers,
        IReadOnlyList<string> options, int arch, bool cubin)
    {
        var pins = new List<GCHandle>();
        try
        {
            byte* Utf8(string s)
            {
                var bytes = Encoding.UTF8.GetBytes(s + "\0");
                var h = GCHandle.Alloc(bytes, GCHandleType.Pinned);
                pins.Add(h);
                return (byte*)h.AddrOfPinnedObject();
            }

            byte** headerText = stackalloc byte*[Math.Max(1, headers.Count)];
            byte** headerNames = stackalloc byte*[Math.Max(1, headers.Count)];
            for (int i = 0; i < headers.Count; i++)
            {
                headerText[i] = Utf8(headers[i].Text);
                headerNames[i] = Utf8(headers[i].Name);
            }
            byte** opts = stackalloc byte*[Math.Max(1, options.Count)];
            for (int i = 0; i < options.Count; i++) opts[i] = Utf8(options[i]);

            Nvrtc.Check(Nvrtc.nvrtcCreateProgram(out nint program, Utf8(source), Utf8(fileName), headers.Count, headerText, headerNames),
                "nvrtcCreateProgram", fileName);
            try
            {
                int rc = Nvrtc.nvrtcCompileProgram(program, options.Count, opts);
                string log = ProgramLog(program);
                if (rc != Nvrtc.Success) throw new KernelCompileException(fileName, arch, rc, log);
                byte[] image;
                if (cubin)
                {
                    Nvrtc.Check(Nvrtc.nvrtcGetCUBINSize(program, out nuint size), "nvrtcGetCUBINSize", fileName);
                    image = new byte[(int)size];
                    fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN", fileName);
                }
                else
                {
                    Nvrtc.Check(Nvrtc.nvrtcGetPTXSize(program, out nuint size), "nvrtcGetPTXSize", fileName);
                    image = new byte[(int)size]; // includes the terminating NUL cuModuleLoadData needs
                    fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetPTX(program, p), "nvrtcGetPTX", fileName);
                }
                return new CompiledKernel(fileName, image, cubin, arch, log);
            }
            finally
            {
                Nvrtc.nvrtcDestroyProgram(ref program);
            }
        }
        finally
        {
            foreach (var h in pins) h.Free();
        }
    }

    private static string ProgramLog(nint program)
    {
        if (Nvrtc.nvrtcGetProgramLogSize(program, out nuint size) != Nvrtc.Success || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf)
            if (Nvrtc.nvrtcGetProgramLog(program, p) != Nvrtc.Success) return "";
        return Encoding.UTF8.GetString(buf, 0, buf.Length - 1).Trim();
    }
}

/// <summary>NVRTC rejected a kernel file: the message is one line, <see cref="Log"/> has NVRTC's full output.</summary>
public sealed class KernelCompileException(string fileName, int arch, int status, string log)
    : EdgeLlmException($"NVRTC could not compile kernels/{fileName} for sm_{arch}: {Nvrtc.ErrorName(status)}: {FirstError(log)}")
{
    public string FileName { get; } = fileName;
    public string Log { get; } = log;

    private static string FirstError(string log)
    {
        foreach (string line in log.Split('\n'))
            if (line.Contains("error", StringComparison.OrdinalIgnoreCase)) return line.Trim();
        return log.Length == 0 ? "(no log)" : log.Split('\n')[0].Trim();
    }
}
