using System.Buffers.Binary;
using System.IO.Compression;
using EdgeLlm.Convert.Sources;
using EdgeLlm.TestSupport;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// The zip reader under torch.save archives: entries (plain and ZIP64) read back byte for byte and agree with
/// .NET's own zip implementation; truncated archives and damaged central directories fail with one-line errors
/// naming the file, the entry or field and the offset; a damaged Meta shard or a hostile pickle inside one is
/// rejected by <see cref="MetaPthSource"/>.
/// </summary>
public class ZipArchiveReaderTests
{
    private static readonly (string Name, byte[] Data)[] Sample =
    [
        ("archive/data.pkl", [0x80, 2, (byte)'}', (byte)'.']),
        ("archive/byteorder", "little"u8.ToArray()),
        ("archive/data/0", Enumerable.Range(0, 1000).Select(i => (byte)(i * 7)).ToArray()),
        ("archive/data/1", []),
        ("archive/version", "3\n"u8.ToArray()),
    ];

    private static string WriteSample(bool forceZip64)
    {
        string path = TestPaths.TempFile("sample.zip");
        using var w = new ZipStoreWriter(path, forceZip64);
        foreach (var (name, data) in Sample)
        {
            w.Begin(name, data.Length);
            for (int i = 0; i < data.Length; i += 300) w.Write(data.AsSpan(i, Math.Min(300, data.Length - i)));
            w.End();
        }
        w.Finish();
        return path;
    }

    private static EdgeLlmException Rejects(string path, string message)
    {
        var e = Assert.Throws<EdgeLlmException>(() => { using var z = ZipArchiveReader.Open(path); });
        Assert.StartsWith(path + ": invalid zip archive: ", e.Message);
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    private static long CentralDirectoryOffset(byte[] b) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 22 + 16));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Entries_read_back_byte_for_byte(bool forceZip64)
    {
        string path = WriteSample(forceZip64);
        using var z = ZipArchiveReader.Open(path);
        Assert.Equal(forceZip64, z.IsZip64);
        Assert.Equal(Sample.Select(s => s.Name), z.Entries.Select(e => e.Name));
        foreach (var (name, data) in Sample)
        {
            var e = z.Require(name);
            Assert.Equal(data.Length, e.Size);
            Assert.Equal(0, e.DataOffset % 64); // torch.save aligns storages to 64 bytes
            Assert.Equal(data, z.GetSpan(e).ToArray());
            var copy = new byte[data.Length];
            z.Read(e, 0, copy);
            Assert.Equal(data, copy);
            Assert.True(z.CheckCrc(e));
        }
        var part = new byte[10];
        z.Read(z.Require("archive/data/0"), 990, part);
        Assert.Equal(Sample[2].Data[990..], part);
        Assert.Throws<ArgumentOutOfRangeException>(() => z.Read(z.Require("archive/data/0"), 991, part));
        Assert.Null(z.Find("archive/data/2"));
        Assert.Contains("zip entry 'archive/data/2' is missing", Assert.Throws<EdgeLlmException>(() => z.Require("archive/data/2")).Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DotNet_zip_reads_what_the_writer_wrote(bool forceZip64)
    {
        using var zip = ZipFile.OpenRead(WriteSample(forceZip64));
        Assert.Equal(Sample.Select(s => s.Name), zip.Entries.Select(e => e.FullName));
        foreach (var (name, data) in Sample)
        {
            using var s = zip.GetEntry(name)!.Open();
            var ms = new MemoryStream();
            s.CopyTo(ms);
            Assert.Equal(data, ms.ToArray());
        }
    }

    [Fact]
    public void The_reader_reads_a_stored_zip_written_by_DotNet()
    {
        string path = TestPaths.TempFile("dotnet.zip");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
            foreach (var (name, data) in Sample)
            {
                using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
                s.Write(data);
            }
        using var z = ZipArchiveReader.Open(path);
        foreach (var (name, data) in Sample)
        {
            Assert.Equal(data, z.GetSpan(z.Require(name)).ToArray());
            Assert.True(z.CheckCrc(z.Require(name)));
        }
    }

    [Fact]
    public void Truncated_archives_are_rejected()
    {
        byte[] full = File.ReadAllBytes(WriteSample(false));
        foreach (int keep in new[] { 0, 10, full.Length / 2, full.Length - 1 })
        {
            string path = TestPaths.TempFile("cut.zip");
            File.WriteAllBytes(path, full[..keep]);
            Rejects(path, keep < 22 ? "too short to be a zip archive" : "no end-of-central-directory record (not a zip archive, or truncated)");
        }
    }

    [Fact]
    public void A_damaged_central_directory_is_rejected_with_the_offset()
    {
        byte[] good = File.ReadAllBytes(WriteSample(false));
        long cd = CentralDirectoryOffset(good);

        string Save(Action<byte[]> damage)
        {
            var b = (byte[])good.Clone();
            damage(b);
            string p = TestPaths.TempFile("bad.zip");
            File.WriteAllBytes(p, b);
            return p;
        }

        Rejects(Save(b => b[cd] ^= 0xff), $"central directory entry 0 at offset {cd}: bad signature");
        Rejects(Save(b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(b.Length - 22 + 16), (uint)good.Length)), "is outside the file");
        Rejects(Save(b => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(b.Length - 22 + 8), 200)), "entry counts disagree");
        Rejects(Save(b => { BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(b.Length - 22 + 8), 200); BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(b.Length - 22 + 10), 200); }),
            "200 entries cannot fit in");
        // Entry 0: a size beyond the file, a local header offset beyond the file, deflate instead of stored.
        Rejects(Save(b => { BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)cd + 20), 1u << 30); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)cd + 24), 1u << 30); }),
            "zip entry 'archive/data.pkl' at offset 64: data (1073741824 bytes) runs past the end of the file");
        Rejects(Save(b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)cd + 42), (uint)good.Length)), $"zip entry 'archive/data.pkl' at offset {cd}: local header offset");
        Rejects(Save(b => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan((int)cd + 10), 8)), "zip entry 'archive/data.pkl' at offset " + cd + ": compression method 8 is not supported");
        // Entry 0 claims more bytes than it has: it runs into the next local header.
        Rejects(Save(b => { BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)cd + 20), 100); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)cd + 24), 100); }),
            "overlapping entries");
        // A central name that does not match its local header.
        Rejects(Save(b => b[cd + 46] = (byte)'X'), "local header name differs from the central directory");
        // A 0xFFFFFFFF size without a ZIP64 extra field.
        Rejects(Save(b => { BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)cd + 20), uint.MaxValue); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)cd + 24), uint.MaxValue); }),
            "no ZIP64 extra field");
    }

    [Fact]
    public void A_damaged_zip64_end_record_is_rejected()
    {
        byte[] good = File.ReadAllBytes(WriteSample(true));
        int locator = good.Length - 22 - 20;
        long z64 = BinaryPrimitives.ReadInt64LittleEndian(good.AsSpan(locator + 8));
        string Save(Action<byte[]> damage)
        {
            var b = (byte[])good.Clone();
            damage(b);
            string p = TestPaths.TempFile("bad64.zip");
            File.WriteAllBytes(p, b);
            return p;
        }
        Rejects(Save(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(locator + 8), good.Length)), "ZIP64 end record offset");
        Rejects(Save(b => b[z64] ^= 1), $"ZIP64 end record at offset {z64}: bad signature");
        Rejects(Save(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan((int)z64 + 48), good.Length + 100L)), "central directory");
        Rejects(Save(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan((int)z64 + 48), -1)), "value 18446744073709551615 is out of range");
        // The local header offset of entry 0 lives in its ZIP64 extra field (forced): point it past the file.
        long cd = BinaryPrimitives.ReadInt64LittleEndian(good.AsSpan((int)z64 + 48));
        int nameLen = BinaryPrimitives.ReadUInt16LittleEndian(good.AsSpan((int)cd + 28));
        Rejects(Save(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan((int)cd + 46 + nameLen + 4 + 16), good.Length * 2L)), "local header offset");
        // A ZIP64 extra field too short for the fields it must carry.
        Rejects(Save(b => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan((int)cd + 46 + nameLen + 2), 8)), "ZIP64 extra field too short");
    }

    // ------------------------------------------------------------------ whole Meta checkpoints

    [Fact]
    public void A_zip64_checkpoint_reads_the_same_values()
    {
        var spec = MetaPthSourceTests.Small;
        using var plain = MetaPthSource.Open(MetaPthSourceTests.Write(spec, 8));
        using var z64 = MetaPthSource.Open(MetaPthSourceTests.Write(spec, 8, forceZip64: true, archive: "consolidated"));
        for (int i = 0; i < plain.Tensors.Count; i++)
        {
            var a = new float[plain.Tensors[i].Rows * plain.Tensors[i].RowLength];
            var b = new float[a.Length];
            plain.Tensors[i].ReadRows(0, (int)plain.Tensors[i].Rows, a);
            z64.Tensors[i].ReadRows(0, (int)z64.Tensors[i].Rows, b);
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void A_truncated_shard_is_rejected_naming_it()
    {
        string dir = MetaPthSourceTests.Write(MetaPthSourceTests.Small, 8);
        string shard = Path.Combine(dir, "consolidated.05.pth");
        var bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length * 2 / 3)]);
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Equal($"{shard}: invalid zip archive: end of central directory at offset {bytes.Length * 2 / 3}: no end-of-central-directory record (not a zip archive, or truncated)", e.Message);
    }

    [Fact]
    public void A_shard_with_a_hostile_pickle_is_rejected_and_nothing_runs()
    {
        string dir = MetaPthSourceTests.Write(MetaPthSourceTests.Small, 2);
        string marker = TestPaths.TempFile("pwned");
        string shard = Path.Combine(dir, "consolidated.01.pth");
        // pickle: os.system("touch marker") as the whole state dict
        var pkl = new List<byte> { 0x80, 2, (byte)'c' };
        pkl.AddRange("os\nsystem\n"u8.ToArray());
        pkl.Add((byte)'X');
        var cmd = System.Text.Encoding.ASCII.GetBytes("touch " + marker);
        pkl.AddRange(BitConverter.GetBytes(cmd.Length));
        pkl.AddRange(cmd);
        pkl.AddRange([0x85, (byte)'R', (byte)'.']);
        using (var w = new ZipStoreWriter(shard))
        {
            w.Add("consolidated/data.pkl", pkl.ToArray());
            w.Add("consolidated/version", "3\n"u8);
            w.Finish();
        }
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Equal($"{shard}:consolidated/data.pkl: pickle offset 2: GLOBAL 'os.system' is not allowed, refused without running anything "
            + "(a checkpoint may only name collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch.BFloat16Storage, torch.HalfStorage, torch.FloatStorage)", e.Message);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void A_corrupt_pickle_fails_its_crc()
    {
        string dir = MetaPthSourceTests.Write(MetaPthSourceTests.Small, 1);
        string shard = Path.Combine(dir, "consolidated.00.pth");
        var bytes = File.ReadAllBytes(shard);
        long at;
        using (var z = ZipArchiveReader.Open(shard)) at = z.Require("archive/data.pkl").DataOffset + 40;
        bytes[at] ^= 0x01;
        File.WriteAllBytes(shard, bytes);
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Equal($"{shard}: zip entry 'archive/data.pkl' fails its CRC-32 check (corrupt file)", e.Message);
    }

    [Fact]
    public void A_storage_entry_of_the_wrong_size_is_rejected()
    {
        string dir = MetaPthSourceTests.Write(MetaPthSourceTests.Small, 1);
        string shard = Path.Combine(dir, "consolidated.00.pth");
        // Rewrite the archive with storage 0 (tok_embeddings, 256 x 128 bf16) one element short.
        string copy = shard + ".orig";
        File.Move(shard, copy);
        using (var src = ZipArchiveReader.Open(copy))
        using (var w = new ZipStoreWriter(shard))
        {
            foreach (var e in src.Entries)
            {
                var data = src.GetSpan(e);
                w.Add(e.Name, e.Name == "archive/data/0" ? data[..^2] : data);
            }
            w.Finish();
        }
        File.Delete(copy);
        var ex = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Equal($"{shard}: tensor 'tok_embeddings.weight': storage entry 'archive/data/0' has 65534 bytes, expected 32768 x 2", ex.Message);
    }
}
