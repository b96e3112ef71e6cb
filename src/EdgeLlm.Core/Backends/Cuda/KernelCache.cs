using System.IO.Hashing;
using System.Text;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// On-disk cache of compiled kernels: <c>~/.cache/edgellm/kernels/&lt;xxh64&gt;.cubin</c> (or <c>.ptx</c>), keyed by
/// an XXH64 of everything that changes NVRTC's output: the source, the headers, the options, the architecture,
/// and the NVRTC and driver versions. Reads and writes are best-effort: a missing or unwritable cache only
/// costs a recompile. Writes go to a temporary file renamed into place, so concurrent runs never see half a file.
/// </summary>
public sealed class KernelCache(string directory)
{
    /// <summary>Bumped when the way kernels are built changes in a way the key does not capture.</summary>
    public const string FormatTag = "edgellm-kernel-cache-v1";

    /// <summary>Environment variable that overrides the cache folder (tests, read-only homes).</summary>
    public const string DirectoryVariable = "EDGELLM_KERNEL_CACHE";

    public string Directory { get; } = directory;

    /// <summary>$EDGELLM_KERNEL_CACHE, else $XDG_CACHE_HOME/edgellm/kernels, else ~/.cache/edgellm/kernels.</summary>
    public static KernelCache Default()
    {
        if (Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } dir) return new KernelCache(dir);
        string? root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrEmpty(root))
        {
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(home)) home = Path.GetTempPath();
            root = Path.Combine(home, ".cache");
        }
        return new KernelCache(Path.Combine(root, "edgellm", "kernels"));
    }

    /// <summary>The cache key of one kernel build. Every part is length-prefixed, so no two inputs collide by concatenation.</summary>
    public static ulong Key(string fileName, string source, IReadOnlyList<(string Name, string Text)> headers, IReadOnlyList<string> options,
        int arch, bool cubin, int driverVersion, (int Major, int Minor) nvrtcVersion)
    {
        var h = new XxHash64();
        void Add(string s)
        {
            byte[] b = Encoding.UTF8.GetBytes(s);
            Span<byte> len = stackalloc byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(len, b.Length);
            h.Append(len);
            h.Append(b);
        }
        Add(FormatTag);
        Add(fileName);
        Add(source);
        Add(headers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var (name, text) in headers) { Add(name); Add(text); }
        Add(options.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (string o in options) Add(o);
        Add(FormattableString.Invariant($"arch={arch};cubin={cubin};driver={driverVersion};nvrtc={nvrtcVersion.Major}.{nvrtcVersion.Minor}"));
        return h.GetCurrentHashAsUInt64();
    }

    /// <summary>The file a key is stored in.</summary>
    public string PathFor(ulong key, bool cubin) => Path.Combine(Directory, $"{key:x16}.{(cubin ? "cubin" : "ptx")}");

    public byte[]? TryRead(ulong key, bool cubin)
    {
        try
        {
            string path = PathFor(key, cubin);
            return File.Exists(path) ? File.ReadAllBytes(path) : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Stores an image; returns false (and leaves no partial file) if the folder is not writable.</summary>
    public bool TryWrite(ulong key, bool cubin, byte[] image)
    {
        string path = PathFor(key, cubin);
        string tmp = path + "." + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".tmp";
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            File.WriteAllBytes(tmp, image);
            File.Move(tmp, path, overwrite: true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (Exception d) when (d is IOException or UnauthorizedAccessException) { }
            return false;
        }
    }
}
