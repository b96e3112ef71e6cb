namespace EdgeLlm.Gguf;

/// <summary>How a model file's bytes are held in memory.</summary>
public enum GgufLoadMode
{
    /// <summary>
    /// Read into memory when the file takes at most half of the memory available now (Linux MemAvailable), else map.
    /// Reading in pays where page walks matter (4 KiB file pages against 2 MiB anonymous huge pages; perf/README.md has
    /// the measurements).
    /// </summary>
    Auto,

    /// <summary>Map the file (llama.cpp's default): nothing copied, pages shared with the page cache and droppable.</summary>
    Map,

    /// <summary>Read the whole file into 2 MiB-aligned anonymous memory, transparent huge pages advised (--no-mmap).</summary>
    Read,
}

/// <summary>How a model file is held (llama.cpp's --no-mmap and --mlock, with an automatic default).</summary>
public sealed record GgufLoadOptions
{
    public static readonly GgufLoadOptions Default = new();

    public GgufLoadMode Mode { get; init; } = GgufLoadMode.Auto;

    /// <summary>Lock the bytes in RAM (mlock) so they are never paged out; refused by the system => a warning, not an error.</summary>
    public bool LockInMemory { get; init; }

    /// <summary>Whether a file of <paramref name="length"/> bytes is read in under this mode (Auto: at most half of MemAvailable).</summary>
    public bool ReadsIn(long length) => Mode switch
    {
        GgufLoadMode.Read => true,
        GgufLoadMode.Map => false,
        _ => MemoryLock.AvailableBytes() is long avail && length <= avail / 2,
    };
}
