using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace EdgeLlm.Convert.Sources;

/// <summary>One member of a zip archive: where its bytes start in the file and how many there are.</summary>
public sealed record ZipEntry(string Name, long DataOffset, long Size, uint Crc32, long LocalHeaderOffset);

/// <summary>
/// A read-only zip archive over a memory-mapped file, as written by <c>torch.save</c>: STORED (uncompressed)
/// entries only, with the ZIP64 extensions that archives over 4 GB need (a 70B Meta shard is ~17 GB). The central
/// directory is parsed and checked up front; entry data is never copied: <see cref="Pointer"/> is an offset into
/// the mapping, and <see cref="Read"/> reads a range with pread for callers that want bounded resident memory.
/// </summary>
/// <remarks>
/// Archives are untrusted input. Every offset and size is checked against the file before it is used, sizes
/// come from the central directory (a local header's may be zero when a data descriptor follows), a local header
/// must carry the same name as its central entry, and entries may not overlap each other or the central
/// directory. Multi-disk archives, encryption and compressed entries are rejected. Problems are
/// <see cref="EdgeLlmException"/>s naming the file, the entry or field, and the byte offset.
/// </remarks>
public sealed unsafe class ZipArchiveReader : IDisposable
{
    private const uint LocalHeaderSig = 0x04034b50;
    private const uint CentralHeaderSig = 0x02014b50;
    private const uint EndSig = 0x06054b50;
    private const uint Zip64EndSig = 0x06064b50;
    private const uint Zip64LocatorSig = 0x07064b50;
    private const int EndBytes = 22;
    private const int Zip64LocatorBytes = 20;
    private const int Zip64EndBytes = 56;
    private const int CentralHeaderBytes = 46;
    private const int LocalHeaderBytes = 30;

    /// <summary>Most entries accepted (a 70B shard has a few hundred; each central entry takes at least 46 bytes).</summary>
    public const int MaxEntries = 1 << 20;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly SafeFileHandle _handle;
    private byte* _base;
    private readonly List<ZipEntry> _entries = new();
    private readonly Dictionary<string, ZipEntry> _byName = new(StringComparer.Ordinal);

    public string Path { get; }
    public long Length { get; }
    public IReadOnlyList<ZipEntry> Entries => _entries;

    /// <summary>True when the archive has a ZIP64 end-of-central-directory record.</summary>
    public bool IsZip64 { get; private set; }

    private ZipArchiveReader(string path, SafeFileHandle handle, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePtr, long length)
    {
        Path = path;
        _handle = handle;
        _map = map;
        _view = view;
        _base = basePtr;
        Length = length;
        try
        {
            Parse();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a zip archive. Throws <see cref="EdgeLlmException"/> or <see cref="IOException"/>.</summary>
    public static ZipArchiveReader Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length < EndBytes) throw Error(path, "end of central directory", 0, $"the file is {length} bytes, too short to be a zip archive");
            map = MemoryMappedFile.CreateFromFile(handle, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            return new ZipArchiveReader(path, handle, map, view, p, length);
        }
        catch (EdgeLlmException) when (view is not null)
        {
            throw; // the constructor already released everything
        }
        catch
        {
            view?.Dispose();
            map?.Dispose();
            handle.Dispose();
            throw;
        }
    }

    public ZipEntry? Find(string name) => _byName.TryGetValue(name, out var e) ? e : null;

    public ZipEntry Require(string name) =>
        Find(name) ?? throw new EdgeLlmException($"{Path}: zip entry '{name}' is missing");

    /// <summary>Zero-copy pointer to an entry's first byte inside the mapping (valid until Dispose).</summary>
    public byte* Pointer(ZipEntry entry)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return _base + entry.DataOffset;
    }

    /// <summary>An entry's bytes as a span (entries under 2 GiB, e.g. data.pkl), zero-copy.</summary>
    public ReadOnlySpan<byte> GetSpan(ZipEntry entry)
    {
        if (entry.Size > int.MaxValue) throw new EdgeLlmException($"{Path}: zip entry '{entry.Name}' is {entry.Size} bytes, too large for one span");
        return new ReadOnlySpan<byte>(Pointer(entry), (int)entry.Size);
    }

    /// <summary>
    /// Copies bytes [offset, offset + dst.Length) of an entry into dst with positioned reads (pread) instead of
    /// touching the mapping, so the pages do not count toward this process's resident memory. Thread-safe.
    /// </summary>
    public void Read(ZipEntry entry, long offset, Span<byte> dst)
    {
        if (offset < 0 || offset > entry.Size || dst.Length > entry.Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Path}: read of {dst.Length} bytes at {offset} is outside zip entry '{entry.Name}' ({entry.Size} bytes)");
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        long at = entry.DataOffset + offset;
        while (!dst.IsEmpty)
        {
            int n = RandomAccess.Read(_handle, dst, at);
            if (n <= 0) throw new EdgeLlmException($"{Path}: zip entry '{entry.Name}': unexpected end of file at offset {at}");
            dst = dst[n..];
            at += n;
        }
    }

    /// <summary>True if the entry's bytes match the CRC-32 in the central directory (reads the whole entry).</summary>
    public bool CheckCrc(ZipEntry entry)
    {
        var crc = new System.IO.Hashing.Crc32();
        byte* p = Pointer(entry);
        for (long done = 0; done < entry.Size;)
        {
            int n = (int)Math.Min(1 << 30, entry.Size - done);
            crc.Append(new ReadOnlySpan<byte>(p + done, n));
            done += n;
        }
        return crc.GetCurrentHashAsUInt32() == entry.Crc32;
    }

    public void Dispose()
    {
        if (_base != null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _base = null;
        _view.Dispose();
        _map.Dispose();
        _handle.Dispose();
    }

    // ---------------------------------------------------------------- parsing

    private void Parse()
    {
        long endAt = FindEnd();
        ushort disk = U16(endAt + 4), cdDisk = U16(endAt + 6);
        long entriesOnDisk = U16(endAt + 8), totalEntries = U16(endAt + 10);
        long cdSize = U32(endAt + 12), cdOffset = U32(endAt + 16);
        long cdLimit = endAt; // the central directory ends where the (ZIP64) end records begin

        long locatorAt = endAt - Zip64LocatorBytes;
        if (locatorAt >= 0 && U32(locatorAt) == Zip64LocatorSig)
        {
            IsZip64 = true;
            uint locDisk = U32(locatorAt + 4);
            long z64At = I64(locatorAt + 8, "ZIP64 end locator", locatorAt);
            uint totalDisks = U32(locatorAt + 16);
            if (locDisk != 0 || totalDisks > 1) throw Error("ZIP64 end locator", locatorAt, "multi-disk archives are not supported");
            if (z64At < 0 || z64At > locatorAt - Zip64EndBytes)
                throw Error("ZIP64 end locator", locatorAt, $"ZIP64 end record offset {z64At} is outside the file");
            if (U32(z64At) != Zip64EndSig) throw Error("ZIP64 end record", z64At, "bad signature");
            long recSize = I64(z64At + 4, "ZIP64 end record size", z64At);
            if (recSize < Zip64EndBytes - 12 || recSize > locatorAt - z64At - 12)
                throw Error("ZIP64 end record", z64At, $"record size {recSize} does not fit before the locator");
            uint d64 = U32(z64At + 16), cd64 = U32(z64At + 20);
            if (d64 != 0 || cd64 != 0) throw Error("ZIP64 end record", z64At, "multi-disk archives are not supported");
            // 0xFFFF / 0xFFFFFFFF in the classic record mean "see the ZIP64 record"; take the ZIP64 values always.
            entriesOnDisk = I64(z64At + 24, "ZIP64 entry count", z64At);
            totalEntries = I64(z64At + 32, "ZIP64 entry count", z64At);
            cdSize = I64(z64At + 40, "ZIP64 central directory size", z64At);
            cdOffset = I64(z64At + 48, "ZIP64 central directory offset", z64At);
            cdLimit = z64At;
        }
        else if (disk != 0 || cdDisk != 0)
        {
            throw Error("end of central directory", endAt, "multi-disk archives are not supported");
        }

        if (entriesOnDisk != totalEntries) throw Error("end of central directory", endAt, $"entry counts disagree ({entriesOnDisk} on this disk, {totalEntries} in total)");
        if (totalEntries > MaxEntries) throw Error("end of central directory", endAt, $"{totalEntries} entries is more than the limit {MaxEntries}");
        if (cdOffset < 0 || cdSize < 0 || cdOffset > cdLimit || cdSize > cdLimit - cdOffset)
            throw Error("central directory", cdOffset, $"central directory ({cdSize} bytes at offset {cdOffset}) is outside the file before the end record at {cdLimit}");
        if (totalEntries * CentralHeaderBytes > cdSize)
            throw Error("central directory", cdOffset, $"{totalEntries} entries cannot fit in {cdSize} bytes");

        long pos = cdOffset, cdEnd = cdOffset + cdSize;
        for (long i = 0; i < totalEntries; i++)
            pos = ReadCentralEntry(pos, cdEnd, i);
        if (pos != cdEnd) throw Error("central directory", pos, $"{cdEnd - pos} bytes left over after {totalEntries} entries");
        CheckNoOverlap(cdOffset);
    }

    /// <summary>Finds the end-of-central-directory record: the last signature whose comment length reaches the file end.</summary>
    private long FindEnd()
    {
        long lowest = Math.Max(0, Length - EndBytes - 0xFFFF);
        for (long at = Length - EndBytes; at >= lowest; at--)
        {
            if (U32(at) == EndSig && at + EndBytes + U16(at + 20) == Length) return at;
        }
        throw Error("end of central directory", Length, "no end-of-central-directory record (not a zip archive, or truncated)");
    }

    private long ReadCentralEntry(long at, long cdEnd, long index)
    {
        if (cdEnd - at < CentralHeaderBytes) throw Error($"central directory entry {index}", at, "truncated entry header");
        if (U32(at) != CentralHeaderSig) throw Error($"central directory entry {index}", at, "bad signature");
        ushort flags = U16(at + 8), method = U16(at + 10);
        uint crc = U32(at + 16);
        long compSize = U32(at + 20), size = U32(at + 24);
        int nameLen = U16(at + 28), extraLen = U16(at + 30), commentLen = U16(at + 32);
        long diskStart = U16(at + 34);
        long localAt = U32(at + 42);
        long varEnd = at + CentralHeaderBytes + nameLen + extraLen + commentLen;
        if (varEnd > cdEnd) throw Error($"central directory entry {index}", at, "name, extra field or comment runs past the central directory");

        string name = Encoding.UTF8.GetString(new ReadOnlySpan<byte>(_base + at + CentralHeaderBytes, nameLen));
        string what = $"zip entry '{name}'";
        if (nameLen == 0) throw Error($"central directory entry {index}", at, "empty entry name");

        ReadZip64Extra(at + CentralHeaderBytes + nameLen, extraLen, what, ref size, ref compSize, ref localAt, ref diskStart);

        if ((flags & 1) != 0) throw Error(what, at, "encrypted entries are not supported");
        if (method != 0) throw Error(what, at, $"compression method {method} is not supported (torch.save stores entries uncompressed)");
        if (compSize != size) throw Error(what, at, $"stored entry has compressed size {compSize} but size {size}");
        if (diskStart != 0) throw Error(what, at, "multi-disk archives are not supported");
        if (localAt < 0 || localAt > Length - LocalHeaderBytes) throw Error(what, at, $"local header offset {localAt} is outside the file");

        if (U32(localAt) != LocalHeaderSig) throw Error(what, localAt, "bad local header signature");
        int localNameLen = U16(localAt + 26), localExtraLen = U16(localAt + 28);
        long dataAt = localAt + LocalHeaderBytes + localNameLen + localExtraLen;
        if (dataAt > Length) throw Error(what, localAt, "local header runs past the end of the file");
        if (localNameLen != nameLen || !new ReadOnlySpan<byte>(_base + localAt + LocalHeaderBytes, nameLen).SequenceEqual(new ReadOnlySpan<byte>(_base + at + CentralHeaderBytes, nameLen)))
            throw Error(what, localAt, "local header name differs from the central directory");
        if (size > Length - dataAt) throw Error(what, dataAt, $"data ({size} bytes) runs past the end of the file ({Length} bytes): truncated archive");

        var entry = new ZipEntry(name, dataAt, size, crc, localAt);
        if (!_byName.TryAdd(name, entry)) throw Error(what, at, "duplicate entry name");
        _entries.Add(entry);
        return varEnd;
    }

    /// <summary>Applies the ZIP64 extended-information extra field (id 1): each 32-bit field that is all ones is replaced, in order.</summary>
    private void ReadZip64Extra(long at, int length, string what, ref long size, ref long compSize, ref long localAt, ref long diskStart)
    {
        bool needSize = size == 0xFFFFFFFF, needComp = compSize == 0xFFFFFFFF, needLocal = localAt == 0xFFFFFFFF, needDisk = diskStart == 0xFFFF;
        long end = at + length;
        bool found = false;
        while (end - at >= 4)
        {
            ushort id = U16(at), len = U16(at + 2);
            long body = at + 4;
            if (len > end - body) throw Error(what, at, $"extra field 0x{id:x4} ({len} bytes) runs past the extra area");
            if (id == 1 && !found)
            {
                found = true;
                long p = body, bodyEnd = body + len;
                if (needSize) { size = Field64(ref p, bodyEnd, what, "uncompressed size"); }
                if (needComp) { compSize = Field64(ref p, bodyEnd, what, "compressed size"); }
                if (needLocal) { localAt = Field64(ref p, bodyEnd, what, "local header offset"); }
                if (needDisk)
                {
                    if (bodyEnd - p < 4) throw Error(what, p, "ZIP64 extra field too short for the disk number");
                    diskStart = U32(p);
                }
            }
            at = body + len;
        }
        if (!found && (needSize || needComp || needLocal || needDisk))
            throw Error(what, at, "a size or offset is 0xFFFFFFFF but there is no ZIP64 extra field");
    }

    private long Field64(ref long p, long end, string what, string field)
    {
        if (end - p < 8) throw Error(what, p, $"ZIP64 extra field too short for the {field}");
        long v = I64(p, what + " " + field, p);
        p += 8;
        return v;
    }

    private void CheckNoOverlap(long cdOffset)
    {
        var sorted = _entries.ToArray();
        Array.Sort(sorted, (a, b) => a.LocalHeaderOffset.CompareTo(b.LocalHeaderOffset));
        for (int i = 0; i < sorted.Length; i++)
        {
            long end = sorted[i].DataOffset + sorted[i].Size;
            long next = i + 1 < sorted.Length ? sorted[i + 1].LocalHeaderOffset : cdOffset;
            if (end > next)
                throw Error($"zip entry '{sorted[i].Name}'", sorted[i].DataOffset, $"data ends at {end}, past the next header at {next} (overlapping entries)");
        }
    }

    // ---------------------------------------------------------------- bounds-checked little-endian reads

    private ushort U16(long at)
    {
        if (at < 0 || at > Length - 2) throw Error("header", at, "read past the end of the file");
        return BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(_base + at, 2));
    }

    private uint U32(long at)
    {
        if (at < 0 || at > Length - 4) throw Error("header", at, "read past the end of the file");
        return BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_base + at, 4));
    }

    private long I64(long at, string field, long where)
    {
        if (at < 0 || at > Length - 8) throw Error(field, where, "read past the end of the file");
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_base + at, 8));
        if (v > long.MaxValue) throw Error(field, where, $"value {v} is out of range");
        return (long)v;
    }

    private EdgeLlmException Error(string field, long offset, string problem) => Error(Path, field, offset, problem);

    private static EdgeLlmException Error(string path, string field, long offset, string problem) =>
        new($"{path}: invalid zip archive: {field} at offset {offset}: {problem}");
}
