using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace EdgeLlm.TestSupport;

/// <summary>
/// Writes a zip archive of STORED entries the way <c>torch.save</c> does: each entry's data aligned to 64 bytes
/// (padding in a local-header extra field), sizes known up front, data streamed in pieces (the CRC-32 is patched
/// into the local header afterwards), and the ZIP64 records whenever a size or offset needs them, or always when
/// <c>forceZip64</c> (to test readers on small files). For test and benchmark checkpoints.
/// </summary>
public sealed class ZipStoreWriter : IDisposable
{
    private const ushort PaddingExtraId = 0x4246; // "FB": torch's alignment padding
    private readonly FileStream _out;
    private readonly bool _forceZip64;
    private readonly int _alignment;
    private readonly List<Entry> _entries = new();
    private Entry? _open;
    private Crc32 _crc = new();
    private long _written;
    private bool _finished;

    private sealed record Entry(string Name, long HeaderOffset, long Size)
    {
        public uint Crc;
    }

    public ZipStoreWriter(string path, bool forceZip64 = false, int alignment = 64)
    {
        _out = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 20);
        _forceZip64 = forceZip64;
        _alignment = alignment;
    }

    /// <summary>Writes a whole entry.</summary>
    public void Add(string name, ReadOnlySpan<byte> data)
    {
        Begin(name, data.Length);
        Write(data);
        End();
    }

    /// <summary>Starts an entry of exactly <paramref name="size"/> bytes, to be given with <see cref="Write"/>.</summary>
    public void Begin(string name, long size)
    {
        if (_open is not null || _finished) throw new InvalidOperationException("an entry is already open or the archive is finished");
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        long at = _out.Position;
        bool zip64 = _forceZip64 || size >= 0xFFFFFFFF;
        int zip64Extra = zip64 ? 4 + 16 : 0;
        long dataAt = at + 30 + nameBytes.Length + zip64Extra;
        int pad = 0;
        if (_alignment > 1 && dataAt % _alignment != 0)
        {
            pad = (int)((_alignment - (dataAt + 4) % _alignment) % _alignment);
            dataAt += 4 + pad;
        }
        int extraLen = zip64Extra + (dataAt - (at + 30 + nameBytes.Length + zip64Extra) > 0 ? 4 + pad : 0);

        Span<byte> h = stackalloc byte[30];
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x04034b50);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], zip64 ? (ushort)45 : (ushort)20);
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], 0x0800); // flags: UTF-8 names
        BinaryPrimitives.WriteUInt16LittleEndian(h[8..], 0);      // STORED
        BinaryPrimitives.WriteUInt16LittleEndian(h[10..], 0);     // time
        BinaryPrimitives.WriteUInt16LittleEndian(h[12..], 0x21);  // date 1980-01-01
        BinaryPrimitives.WriteUInt32LittleEndian(h[14..], 0);     // CRC, patched in End()
        uint size32 = zip64 ? 0xFFFFFFFF : (uint)size;
        BinaryPrimitives.WriteUInt32LittleEndian(h[18..], size32);
        BinaryPrimitives.WriteUInt32LittleEndian(h[22..], size32);
        BinaryPrimitives.WriteUInt16LittleEndian(h[26..], (ushort)nameBytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(h[28..], (ushort)extraLen);
        _out.Write(h);
        _out.Write(nameBytes);
        if (zip64)
        {
            Span<byte> z = stackalloc byte[20];
            BinaryPrimitives.WriteUInt16LittleEndian(z, 1);
            BinaryPrimitives.WriteUInt16LittleEndian(z[2..], 16);
            BinaryPrimitives.WriteInt64LittleEndian(z[4..], size);
            BinaryPrimitives.WriteInt64LittleEndian(z[12..], size);
            _out.Write(z);
        }
        if (extraLen > zip64Extra)
        {
            Span<byte> p = stackalloc byte[4 + pad];
            p.Clear();
            BinaryPrimitives.WriteUInt16LittleEndian(p, PaddingExtraId);
            BinaryPrimitives.WriteUInt16LittleEndian(p[2..], (ushort)pad);
            _out.Write(p);
        }
        _open = new Entry(name, at, size);
        _crc = new Crc32();
        _written = 0;
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        if (_open is null) throw new InvalidOperationException("no open entry");
        if (data.Length > _open.Size - _written) throw new InvalidOperationException($"entry '{_open.Name}' is declared as {_open.Size} bytes; more was written");
        _out.Write(data);
        _crc.Append(data);
        _written += data.Length;
    }

    public void End()
    {
        var e = _open ?? throw new InvalidOperationException("no open entry");
        if (_written != e.Size) throw new InvalidOperationException($"entry '{e.Name}' is declared as {e.Size} bytes but {_written} were written");
        e.Crc = _crc.GetCurrentHashAsUInt32();
        long end = _out.Position;
        _out.Position = e.HeaderOffset + 14;
        Span<byte> c = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(c, e.Crc);
        _out.Write(c);
        _out.Position = end;
        _entries.Add(e);
        _open = null;
    }

    /// <summary>Writes the central directory and end records.</summary>
    public void Finish()
    {
        if (_open is not null) throw new InvalidOperationException($"entry '{_open.Name}' is still open");
        if (_finished) return;
        long cdAt = _out.Position;
        foreach (var e in _entries) WriteCentral(e);
        long cdSize = _out.Position - cdAt;
        bool zip64 = _forceZip64 || _entries.Count >= 0xFFFF || cdAt >= 0xFFFFFFFF || cdSize >= 0xFFFFFFFF;
        if (zip64)
        {
            long z64At = _out.Position;
            Span<byte> r = stackalloc byte[56 + 20];
            BinaryPrimitives.WriteUInt32LittleEndian(r, 0x06064b50);
            BinaryPrimitives.WriteInt64LittleEndian(r[4..], 44);
            BinaryPrimitives.WriteUInt16LittleEndian(r[12..], 45);
            BinaryPrimitives.WriteUInt16LittleEndian(r[14..], 45);
            BinaryPrimitives.WriteUInt32LittleEndian(r[16..], 0);
            BinaryPrimitives.WriteUInt32LittleEndian(r[20..], 0);
            BinaryPrimitives.WriteInt64LittleEndian(r[24..], _entries.Count);
            BinaryPrimitives.WriteInt64LittleEndian(r[32..], _entries.Count);
            BinaryPrimitives.WriteInt64LittleEndian(r[40..], cdSize);
            BinaryPrimitives.WriteInt64LittleEndian(r[48..], cdAt);
            BinaryPrimitives.WriteUInt32LittleEndian(r[56..], 0x07064b50);
            BinaryPrimitives.WriteUInt32LittleEndian(r[60..], 0);
            BinaryPrimitives.WriteInt64LittleEndian(r[64..], z64At);
            BinaryPrimitives.WriteUInt32LittleEndian(r[72..], 1);
            _out.Write(r);
        }
        Span<byte> end = stackalloc byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end[4..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(end[6..], 0);
        ushort count = zip64 ? (ushort)0xFFFF : (ushort)_entries.Count;
        BinaryPrimitives.WriteUInt16LittleEndian(end[8..], count);
        BinaryPrimitives.WriteUInt16LittleEndian(end[10..], count);
        BinaryPrimitives.WriteUInt32LittleEndian(end[12..], zip64 ? 0xFFFFFFFF : (uint)cdSize);
        BinaryPrimitives.WriteUInt32LittleEndian(end[16..], zip64 ? 0xFFFFFFFF : (uint)cdAt);
        BinaryPrimitives.WriteUInt16LittleEndian(end[20..], 0);
        _out.Write(end);
        _out.Flush();
        _finished = true;
    }

    private void WriteCentral(Entry e)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(e.Name);
        bool bigSize = _forceZip64 || e.Size >= 0xFFFFFFFF;
        bool bigOffset = _forceZip64 || e.HeaderOffset >= 0xFFFFFFFF;
        int extraLen = bigSize || bigOffset ? 4 + (bigSize ? 16 : 0) + (bigOffset ? 8 : 0) : 0;
        Span<byte> h = stackalloc byte[46];
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x02014b50);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], extraLen > 0 ? (ushort)0x032D : (ushort)0x0314); // made by unix, 4.5 / 2.0
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], extraLen > 0 ? (ushort)45 : (ushort)20);
        BinaryPrimitives.WriteUInt16LittleEndian(h[8..], 0x0800);
        BinaryPrimitives.WriteUInt16LittleEndian(h[10..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(h[12..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(h[14..], 0x21);
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], e.Crc);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], bigSize ? 0xFFFFFFFF : (uint)e.Size);
        BinaryPrimitives.WriteUInt32LittleEndian(h[24..], bigSize ? 0xFFFFFFFF : (uint)e.Size);
        BinaryPrimitives.WriteUInt16LittleEndian(h[28..], (ushort)nameBytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(h[30..], (ushort)extraLen);
        BinaryPrimitives.WriteUInt16LittleEndian(h[32..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(h[34..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(h[36..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(h[38..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(h[42..], bigOffset ? 0xFFFFFFFF : (uint)e.HeaderOffset);
        _out.Write(h);
        _out.Write(nameBytes);
        if (extraLen > 0)
        {
            Span<byte> z = stackalloc byte[extraLen];
            BinaryPrimitives.WriteUInt16LittleEndian(z, 1);
            BinaryPrimitives.WriteUInt16LittleEndian(z[2..], (ushort)(extraLen - 4));
            int p = 4;
            if (bigSize)
            {
                BinaryPrimitives.WriteInt64LittleEndian(z[p..], e.Size); p += 8;
                BinaryPrimitives.WriteInt64LittleEndian(z[p..], e.Size); p += 8;
            }
            if (bigOffset) BinaryPrimitives.WriteInt64LittleEndian(z[p..], e.HeaderOffset);
            _out.Write(z);
        }
    }

    public void Dispose() => _out.Dispose();
}
