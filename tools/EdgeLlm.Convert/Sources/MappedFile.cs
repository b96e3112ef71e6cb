using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace EdgeLlm.Convert.Sources;

/// <summary>A whole file mapped read-only; tensors are read straight from the page cache, never loaded whole.</summary>
internal sealed unsafe partial class MappedFile : IDisposable
{
    private MemoryMappedFile? _map;
    private MemoryMappedViewAccessor? _view;

    public string Path { get; }
    public long Length { get; }
    public byte* Base { get; private set; }

    private MappedFile(string path, long length) { Path = path; Length = length; }

    public static MappedFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        var m = new MappedFile(path, fs.Length);
        if (m.Length == 0) { fs.Dispose(); throw new EdgeLlmException($"{path}: the file is empty"); }
        try
        {
            m._map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            m._view = m._map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            m._view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            m.Base = p + m._view.PointerOffset;
            return m;
        }
        catch
        {
            m.Dispose();
            fs.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Drops this process's mapping of pages wholly inside [offset, offset + length) once they have been read
    /// (Linux madvise MADV_DONTNEED; the page cache keeps them). Converting a 70B checkpoint touches every page
    /// once, and without this the mapped pages would count against the converter's resident set. A page that
    /// another thread still reads is simply faulted in again from the page cache.
    /// </summary>
    public void Release(long offset, long length)
    {
        if (!OperatingSystem.IsLinux() || Base == null) return;
        long page = Environment.SystemPageSize;
        long start = ((long)Base + offset + page - 1) / page * page;
        long end = ((long)Base + offset + length) / page * page;
        if (end - start >= page) _ = Madvise((nint)start, (nuint)(end - start), MadvDontNeed);
    }

    private const int MadvDontNeed = 4;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint addr, nuint length, int advice);

    public void Dispose()
    {
        if (Base != null) { _view!.SafeMemoryMappedViewHandle.ReleasePointer(); Base = null; }
        _view?.Dispose();
        _map?.Dispose();
        _view = null;
        _map = null;
    }
}
