using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Microsoft.Win32.SafeHandles;

namespace EdgeLlm.Cli;

/// <summary>
/// The one linux-x64 binary holds two Native AOT images of the whole CLI: the executable itself, built for x86-64-v3
/// (AVX2 + FMA; AVX-VNNI checked at run time), and the same program built as a shared library for x86-64-v4
/// (AVX-512), embedded as a resource. At start, when CPUID and the kernel both report AVX-512 F/BW/CD/DQ/VL and
/// EDGELLM_ISA does not say avx2, the library is loaded from an anonymous in-memory file (memfd_create; if that is
/// not possible, a private temporary file that is unlinked as soon as it is loaded) and its <c>edgellm_main</c> runs
/// the command line; the executable's own runtime then only waits for the exit code. Otherwise (and if loading
/// fails, with one line on stderr) the x86-64-v3 code runs it. Nothing is left on disk either way.
/// </summary>
public static unsafe partial class ImageSelection
{
    public const string ResourceName = "edgellm-x86-64-v4.so";
    public const string EntryPoint = "edgellm_main";
    public const string IsaVariable = "EDGELLM_ISA";

    /// <summary>True inside the embedded x86-64-v4 image (set by its entry point before anything else runs).</summary>
    public static bool InEmbeddedImage { get; internal set; }

    /// <summary>Why the x86-64-v3 image runs although the binary carries the AVX-512 one; null when not applicable.</summary>
    public static string? V3Reason { get; private set; }

    /// <summary>Which image runs and why, for --version, bench and devices.</summary>
    public static string Describe()
    {
        if (InEmbeddedImage) return "x86-64-v4 image (AVX-512 kernels), embedded";
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64) return $"{RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()} image";
        string self = Avx512F.IsSupported ? "x86-64-v4 image (AVX-512 kernels)" : Avx2.IsSupported ? "x86-64-v3 image (AVX2 kernels)" : "x64 image (no AVX2)";
        return V3Reason is null ? self : $"{self}: {V3Reason}";
    }

    /// <summary>
    /// Runs <paramref name="args"/> in the embedded AVX-512 image when this binary has one and the CPU can run it;
    /// false means the caller runs them here. Call first thing in Main.
    /// </summary>
    public static bool TryRunEmbedded(string[] args, out int exitCode)
    {
        exitCode = 0;
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !OperatingSystem.IsLinux()) return false;
        using var image = typeof(ImageSelection).Assembly.GetManifestResourceStream(ResourceName) as UnmanagedMemoryStream;
        if (image is null) return false;   // not the published x64 executable (tests, the library itself)

        string? forced = Environment.GetEnvironmentVariable(IsaVariable);
        if (forced is { Length: > 0 } && forced.ToLowerInvariant() is "avx2" or "x86-64-v3" or "v3")
        {
            V3Reason = $"{IsaVariable}={forced}";
            return false;
        }
        if (forced is { Length: > 0 } && forced.ToLowerInvariant() is not ("auto" or "avx512" or "avx-512" or "x86-64-v4" or "v4")
            && !Warn($"{IsaVariable}={forced} is not avx2 or auto; choosing by CPU", out exitCode))
            return true;
        if (!CpuHasAvx512(out string missing))
        {
            V3Reason = $"the CPU has no {missing}";
            return false;
        }

        nint lib = Load(image, out string? failure);
        if (lib == 0 || !NativeLibrary.TryGetExport(lib, EntryPoint, out nint entry))
        {
            V3Reason = $"the AVX-512 image did not load ({failure ?? $"no {EntryPoint} export"})";
            return !Warn($"{V3Reason}; running the x86-64-v3 (AVX2) image", out exitCode);
        }
        exitCode = Call((delegate* unmanaged<int, byte**, int>)entry, args);
        return true;
    }

    /// <summary>
    /// One warning line on stderr; false (and exit code 1) when stderr cannot take it (a full disk, the file-size limit):
    /// the process then stops as any command does when its stderr fails, instead of the write's exception aborting it.
    /// </summary>
    private static bool Warn(string text, out int exitCode)
    {
        exitCode = 0;
        if (EdgeLlm.IO.StandardStreams.TryWriteError($"edgellm: warning: {text}")) return true;
        exitCode = 1;
        return false;
    }

    /// <summary>
    /// AVX-512 F, DQ, CD, BW and VL (the x86-64-v4 set the embedded image requires; it aborts at start without it):
    /// CPUID leaf 7 EBX bits 16, 17, 28, 30, 31, and the kernel's flags in /proc/cpuinfo, which drop avx512* when the
    /// OS does not save the AVX-512 state (XCR0). <paramref name="missing"/> names what is absent.
    /// </summary>
    public static bool CpuHasAvx512(out string missing)
    {
        missing = "AVX-512";
        if (!X86Base.IsSupported || X86Base.CpuId(0, 0).Eax < 7) return false;
        int ebx = X86Base.CpuId(7, 0).Ebx;
        var absent = new List<string>();
        foreach (var (bit, name) in Avx512Bits)
            if ((ebx & (1 << bit)) == 0) absent.Add(name);
        if (absent.Count > 0)
        {
            missing = "AVX-512 " + string.Join('/', absent);
            return false;
        }
        string? flags = CpuInfoFlags();
        if (flags is not null)
        {
            var set = new HashSet<string>(flags.Split(' ', StringSplitOptions.RemoveEmptyEntries));
            foreach (var (_, name) in Avx512Bits)
                if (!set.Contains("avx512" + name.ToLowerInvariant())) absent.Add(name);
            if (absent.Count > 0)
            {
                missing = "AVX-512 " + string.Join('/', absent) + " enabled by the OS (/proc/cpuinfo)";
                return false;
            }
        }
        return true;
    }

    private static readonly (int Bit, string Name)[] Avx512Bits = [(16, "F"), (17, "DQ"), (28, "CD"), (30, "BW"), (31, "VL")];

    private static string? CpuInfoFlags()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("flags", StringComparison.Ordinal) && line.IndexOf(':') is int colon and > 0)
                    return line[(colon + 1)..];
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    private const uint MFD_CLOEXEC = 1;

    [LibraryImport("libc", EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MemfdCreate(string name, uint flags);

    /// <summary>dlopen()s the image from a memfd, else from a temporary file unlinked right after; 0 and the reasons when neither works.</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private static nint Load(UnmanagedMemoryStream image, out string? failure)
    {
        var bytes = new ReadOnlySpan<byte>(image.PositionPointer, checked((int)image.Length));
        var reasons = new List<string>();
        int fd = -1;
        try { fd = MemfdCreate("edgellm-x86-64-v4", MFD_CLOEXEC); }
        catch (EntryPointNotFoundException) { reasons.Add("memfd_create: not in this C library"); }
        if (fd >= 0)
        {
            using var handle = new SafeFileHandle(fd, ownsHandle: true);
            try
            {
                RandomAccess.Write(handle, bytes, 0);
                if (NativeLibrary.TryLoad($"/proc/self/fd/{fd}", out nint h)) { failure = null; return h; }
                reasons.Add($"dlopen /proc/self/fd/{fd} failed");
            }
            catch (IOException e) { reasons.Add($"memfd: {e.Message}"); }
            catch (ArgumentOutOfRangeException e) when (EdgeLlm.IO.FileSizeLimit.IsExceeded(e))
            {
                reasons.Add($"memfd: the file size limit (ulimit -f) is below the image's {bytes.Length >> 20} MiB");
            }
        }
        else if (reasons.Count == 0) reasons.Add($"memfd_create: errno {Marshal.GetLastPInvokeError()}");

        // No memfd (an old kernel, a seccomp filter, no /proc): a private file in the temp folder, unlinked once loaded.
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-x86-64-v4-{Environment.ProcessId}-{Guid.NewGuid():N}.so");
        try
        {
            using (var f = new FileStream(path, new FileStreamOptions
                   { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute }))
                f.Write(bytes);
            if (NativeLibrary.TryLoad(path, out nint h)) { failure = null; return h; }
            reasons.Add($"dlopen {path} failed (a noexec temp folder? set TMPDIR)");
        }
        catch (IOException e) { reasons.Add($"temp file: {e.Message}"); }
        catch (UnauthorizedAccessException e) { reasons.Add($"temp file: {e.Message}"); }
        catch (ArgumentOutOfRangeException e) when (EdgeLlm.IO.FileSizeLimit.IsExceeded(e))
        {
            reasons.Add($"temp file: the file size limit (ulimit -f) is below the image's {bytes.Length >> 20} MiB");
        }
        finally
        {
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        failure = string.Join("; ", reasons);
        return 0;
    }

    /// <summary>Calls the image's entry with a C argv (UTF-8, NUL-terminated, argv[argc] = NULL, no program name).</summary>
    private static int Call(delegate* unmanaged<int, byte**, int> entry, string[] args)
    {
        byte** argv = (byte**)NativeMemory.AllocZeroed((nuint)(args.Length + 1), (nuint)sizeof(byte*));
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                int n = System.Text.Encoding.UTF8.GetByteCount(args[i]);
                byte* s = (byte*)NativeMemory.Alloc((nuint)n + 1);
                System.Text.Encoding.UTF8.GetBytes(args[i], new Span<byte>(s, n));
                s[n] = 0;
                argv[i] = s;
            }
            return entry(args.Length, argv);
        }
        finally
        {
            for (int i = 0; i < args.Length; i++) NativeMemory.Free(argv[i]);
            NativeMemory.Free(argv);
        }
    }

    /// <summary>The library side: argv back to strings (null entries or invalid counts give no arguments).</summary>
    public static string[] ArgsFrom(int argc, byte** argv)
    {
        if (argc <= 0 || argv is null) return [];
        var a = new string[argc];
        for (int i = 0; i < argc; i++) a[i] = argv[i] is null ? "" : Marshal.PtrToStringUTF8((nint)argv[i]) ?? "";
        return a;
    }
}
