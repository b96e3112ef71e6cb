using System.IO.MemoryMappedFiles;

namespace EdgeLlm.Convert.Sources;

/// <summary>A whole file mapped read-only; tensors are read straight from the page cache, never loaded whole.</summary>
internal sealed unsafe class MappedFile : IDisposable
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

    public void Dispose()
    {
        if (Base != null) { _view!.SafeMemoryMappedViewHandle.ReleasePointer(); Base = null; }
        _view?.Dispose();
        _map?.Dispose();
        _view = null;
        _map = null;
    }
}
