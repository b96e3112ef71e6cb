using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Gguf;

/// <summary>
/// Hand-crafted invalid GGUF files: each must fail with a one-line <see cref="GgufFormatException"/> that names
/// the file, the right field and the byte offset of that field. Then bounded, seeded sweeps over truncated and
/// corrupted copies of real models: every one must either load (with every tensor inside the file) or fail
/// with a <see cref="GgufFormatException"/>, never anything else.
/// </summary>
public class GgufHostileFileTests
{
    private const uint F32 = (uint)GgmlType.F32;
    private const uint F64 = (uint)GgmlType.F64;
    private const uint Q4_0 = (uint)GgmlType.Q4_0;

    // ------------------------------------------------------------------ helpers

    private static GgufFormatException Rejects(GgufBytes b, string field, long offset, string? containing = null)
    {
        string path = b.Save();
        var e = Assert.Throws<GgufFormatException>(() => { using var f = GgufFile.Open(path); });
        Assert.Equal(path, e.Path);
        Assert.Equal(field, e.Field);
        Assert.Equal(offset, e.Offset);
        Assert.StartsWith($"{path}: invalid GGUF: {field} at offset {offset}: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
        if (containing is not null) Assert.Contains(containing, e.Message);
        return e;
    }

    private static GgufFile Loads(GgufBytes b) => GgufFile.Open(b.Save());

    /// <summary>A file with no tensors and one metadata pair "a" of <paramref name="type"/>; marks key, type, value.</summary>
    private static GgufBytes OneKv(GgufValueType type, Action<GgufBytes> value)
    {
        var b = new GgufBytes().Header(0, 1).Mark("key").Str("a").Mark("type").U32((uint)type).Mark("value");
        value(b);
        return b;
    }

    /// <summary>A file with one string KV, the given tensor infos, padding, then <paramref name="dataBytes"/> zero bytes.</summary>
    private static GgufBytes TensorFile(int tensorCount, Action<GgufBytes> infos, long dataBytes, uint alignment = 32)
    {
        var b = new GgufBytes().Header((ulong)tensorCount, alignment == 32 ? 1UL : 2UL).KvString("general.architecture", "llama");
        if (alignment != 32) b.Mark("alignment").KvU32("general.alignment", alignment);
        infos(b);
        return b.Pad(alignment).Mark("data").Zeros(dataBytes);
    }

    /// <summary>w: F32 [8, 2] = 64 bytes at 0; q: Q4_0 [64] = 36 bytes at 64. Data is exactly 100 bytes.</summary>
    private static GgufBytes TwoTensors(ulong qOffset = 64, long dataBytes = 100) => TensorFile(2, b => b
        .TensorInfo("w", [8, 2], F32, 0)
        .TensorInfo("q", [64], Q4_0, qOffset), dataBytes);

    // ------------------------------------------------------------------ controls: the builder makes valid files

    [Fact]
    public void ControlFilesLoad()
    {
        var b = TwoTensors();
        using (var f = Loads(b))
        {
            Assert.Equal(b["data"], f.DataOffset);
            Assert.Equal(2, f.Tensors.Count);
            Assert.Equal(new long[] { 8, 2 }, f.FindTensor("w")!.Dims);
            Assert.Equal(64, f.FindTensor("q")!.Offset);
            Assert.Equal(36, f.GetTensor("q")!.Value.ByteLength);
            Assert.Equal(24, f.GetKeyOffset("general.architecture"));
            Assert.Equal(-1, f.GetKeyOffset("nope"));
        }

        // the empty file: a bare 24-byte header
        using (var f = Loads(new GgufBytes().Header(0, 0)))
        {
            Assert.Empty(f.Keys);
            Assert.Empty(f.Tensors);
            Assert.Equal(24, f.DataOffset);
        }

        // alignment 64: data section and offsets on 64-byte boundaries
        var b64 = TensorFile(2, x => x.TensorInfo("w", [8, 2], F32, 0).TensorInfo("q", [64], Q4_0, 64), 100, alignment: 64);
        using (var f = Loads(b64))
        {
            Assert.Equal(64u, f.Alignment);
            Assert.Equal(0, f.DataOffset % 64);
        }

        // GGUF v2 reads like v3
        using (var f = Loads(new GgufBytes().Header(0, 1, version: 2).KvU32("x", 7)))
            Assert.Equal(7, f.GetInt("x"));
    }

    // ------------------------------------------------------------------ header

    [Fact]
    public void BadMagic()
    {
        var e = Rejects(new GgufBytes().Header(0, 0, magic: 0x58554747), "magic", 0, "47 47 55 58");
        Assert.Contains("not a GGUF file", e.Message);
        Rejects(new GgufBytes().Raw("PK\x03\x04 this is a zip, not a model"u8), "magic", 0);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0x03000000u)]
    public void UnsupportedVersion(uint version)
    {
        var e = Rejects(new GgufBytes().Header(0, 0, version), "version", 4, $"unsupported GGUF version {version}");
        if (version == 0x03000000u) Assert.Contains("big-endian", e.Message);
    }

    [Fact]
    public void TruncatedHeaderAtEveryLength()
    {
        byte[] full = new GgufBytes().Header(0, 0).ToArray();
        Assert.Equal(24, full.Length);
        for (int n = 0; n < 24; n++)
        {
            var (field, offset) = n switch
            {
                < 4 => ("magic", 0L),
                < 8 => ("version", 4L),
                < 16 => ("tensor_count", 8L),
                _ => ("metadata_kv_count", 16L),
            };
            var e = Rejects(new GgufBytes().Raw(full.AsSpan(0, n)), field, n == 0 ? 0 : offset);
            Assert.Contains(n == 0 ? "empty" : "truncated", e.Message);
        }
    }

    [Fact]
    public void HugeCounts()
    {
        Rejects(new GgufBytes().Header(0, 1UL << 62), "metadata_kv_count", 16, "cannot fit");
        Rejects(new GgufBytes().Header(1UL << 62, 0), "tensor_count", 8, "cannot fit");
        Rejects(new GgufBytes().Header(ulong.MaxValue, 0), "tensor_count", 8);
        // a count that is small but still more than the rest of the file can hold
        Rejects(new GgufBytes().Header(0, 3).KvU32("a", 1).KvU32("b", 2), "metadata_kv_count", 16);
    }

    // ------------------------------------------------------------------ metadata

    [Fact]
    public void HugeStringLengths()
    {
        // as a key
        Rejects(new GgufBytes().Header(0, 1).U64(1UL << 63).Zeros(16), "metadata[0].key", 24, "runs past the end");
        // as a value
        var b = OneKv(GgufValueType.String, x => x.U64(1UL << 63).Zeros(16));
        Rejects(b, "metadata 'a'", b["value"], "string length 9223372036854775808");
        // inside a string array
        b = OneKv(GgufValueType.Array, x => x.U32((uint)GgufValueType.String).U64(2).Str("ok").Mark("bad").U64(ulong.MaxValue));
        Rejects(b, "metadata 'a'[1]", b["bad"]);
    }

    [Fact]
    public void StringArrayWhoseElementsAddUpPastTheFile()
    {
        // 100 strings of 10 bytes would need 1800 bytes; only 60 are present. The count check passes
        // (100 * 8 bytes fit), and the reader stops at the first element that does not fit.
        var b = OneKv(GgufValueType.Array, x =>
        {
            x.U32((uint)GgufValueType.String).U64(100);
            for (int i = 0; i < 60; i++) x.Str("0123456789");
            x.Mark("end");
        });
        Rejects(b, "metadata 'a'[60] length", b["end"], "truncated");
    }

    [Theory]
    [InlineData(GgufValueType.UInt8)]
    [InlineData(GgufValueType.String)]
    [InlineData(GgufValueType.Array)]
    [InlineData(GgufValueType.Float64)]
    public void HugeArrayCount(GgufValueType elementType)
    {
        var b = OneKv(GgufValueType.Array, x => x.U32((uint)elementType).Mark("count").U64(1UL << 62).Zeros(64));
        Rejects(b, "metadata 'a' count", b["count"], "cannot fit");
    }

    [Fact]
    public void UnknownValueTypes()
    {
        var b = OneKv((GgufValueType)13, x => x.U32(0));
        Rejects(b, "metadata 'a' type", b["type"], "unknown value type 13");
        b = OneKv((GgufValueType)0xFFFFFFFF, x => x.U32(0));
        Rejects(b, "metadata 'a' type", b["type"], "unknown value type 4294967295");
        b = OneKv(GgufValueType.Array, x => x.U32(42).U64(0));
        Rejects(b, "metadata 'a' element type", b["value"], "unknown value type 42");
    }

    [Fact]
    public void BoolMustBeZeroOrOne()
    {
        var b = OneKv(GgufValueType.Bool, x => x.U8(2));
        Rejects(b, "metadata 'a'", b["value"], "bool value 2");
        b = OneKv(GgufValueType.Array, x => x.U32((uint)GgufValueType.Bool).U64(3).U8(1).U8(0).Mark("bad").U8(255));
        Rejects(b, "metadata 'a'[2]", b["bad"], "bool value 255");
        using var f = Loads(OneKv(GgufValueType.Bool, x => x.U8(1)));
        Assert.True(f.GetBool("a"));
    }

    [Fact]
    public void NestedArraysLoadUpToTheDepthLimitAndNoDeeper()
    {
        GgufBytes Nested(int levels) => OneKv(GgufValueType.Array, x =>
        {
            for (int i = 0; i < levels - 1; i++) x.U32((uint)GgufValueType.Array).U64(1);
            x.Mark("innermost").U32((uint)GgufValueType.UInt8).U64(2).U8(7).U8(9);
        });

        using (var f = Loads(Nested(GgufFile.MaxArrayNesting)))
        {
            var v = f.Get("a")!;
            for (int i = 0; i < GgufFile.MaxArrayNesting - 1; i++) v = Assert.Single((GgufValue[])v.Value);
            Assert.Equal(new byte[] { 7, 9 }, v.Value);
        }
        var b = Nested(GgufFile.MaxArrayNesting + 1);
        string field = "metadata 'a'" + string.Concat(Enumerable.Repeat("[0]", GgufFile.MaxArrayNesting));
        Rejects(b, field, b["innermost"], "nested deeper");
    }

    [Fact]
    public void BadKeys()
    {
        Rejects(new GgufBytes().Header(0, 1).Key("", GgufValueType.UInt8).U8(0).Zeros(8), "metadata[0].key", 24, "empty key");
        var b = new GgufBytes().Header(0, 1).U64(GgufFile.MaxKeyBytes + 1).Raw(new byte[GgufFile.MaxKeyBytes + 1]).U32(0).U8(0);
        Rejects(b, "metadata[0].key", 24, "over the limit of 65535");
        b = new GgufBytes().Header(0, 2).KvU32("a", 1).Mark("dup").KvU32("a", 2);
        Rejects(b, "metadata 'a'", b["dup"], "duplicate key (first defined at offset 24)");
        // a key with control characters is escaped: the message stays on one line
        b = new GgufBytes().Header(0, 1).Key("evil\nkey\r", GgufValueType.Bool).Mark("v").U8(3);
        Rejects(b, "metadata 'evil\\u000akey\\u000d'", b["v"]);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(3u)]
    [InlineData(48u)]
    public void AlignmentMustBeAPowerOfTwo(uint alignment)
    {
        var b = new GgufBytes().Header(0, 2).KvString("x", "y").Mark("k").KvU32("general.alignment", alignment);
        Rejects(b, "metadata 'general.alignment'", b["k"], $"alignment {alignment} is not a power of two");
    }

    [Theory]
    [InlineData(GgufValueType.Int32)]
    [InlineData(GgufValueType.UInt64)]
    [InlineData(GgufValueType.String)]
    public void AlignmentMustBeAU32(GgufValueType type)
    {
        var b = new GgufBytes().Header(0, 1).Mark("k").Key("general.alignment", type);
        if (type == GgufValueType.Int32) b.U32(32);
        else if (type == GgufValueType.UInt64) b.U64(32);
        else b.Str("32");
        Rejects(b, "metadata 'general.alignment'", b["k"], "must be of type UInt32");
    }

    // ------------------------------------------------------------------ tensor infos

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public void DimensionCountOutOfRange(int nDims)
    {
        var dims = Enumerable.Repeat(2UL, nDims).ToArray();
        var b = TensorFile(1, x => x.TensorInfo("w", dims, F32, 0), 128);
        Rejects(b, "tensor 'w' n_dims", b["w.n_dims"], $"{nDims} dimensions");
    }

    [Fact]
    public void ZeroDimension()
    {
        var b = TensorFile(1, x => x.TensorInfo("w", [8, 0], F32, 0), 32);
        Rejects(b, "tensor 'w' dims[1]", b["w.dims[1]"], "invalid dimension 0");
    }

    [Fact]
    public void DimensionAboveInt64()
    {
        var b = TensorFile(1, x => x.TensorInfo("w", [1UL << 63], F32, 0), 32);
        Rejects(b, "tensor 'w' dims[0]", b["w.dims[0]"], "invalid dimension");
    }

    [Theory]
    [InlineData(1UL << 32, 1UL << 32, 1)]
    [InlineData(1UL << 62, 2, 1)]
    [InlineData(3, 1UL << 62, 1)]
    public void ElementCountOverflow(ulong d0, ulong d1, int badDim)
    {
        var b = TensorFile(1, x => x.TensorInfo("w", [d0, d1], F32, 0), 32);
        Rejects(b, $"tensor 'w' dims[{badDim}]", b[$"w.dims[{badDim}]"], "overflows");
        b = TensorFile(1, x => x.TensorInfo("w", [2, 2, 1UL << 31, 1UL << 31], F32, 0), 32);
        Rejects(b, "tensor 'w' dims[3]", b["w.dims[3]"], "overflows");
    }

    [Fact]
    public void ByteSizeOverflowEvenThoughElementCountFits()
    {
        // 2^62 F64 elements fit in 63 bits; 2^65 bytes do not
        var b = TensorFile(1, x => x.TensorInfo("w", [1UL << 61, 2], F64, 0), 32);
        Rejects(b, "tensor 'w' type", b["w.type"], "byte size");
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(5u)]
    [InlineData(33u)]
    [InlineData(1000u)]
    [InlineData(uint.MaxValue)]
    public void UnknownGgmlType(uint type)
    {
        var b = TensorFile(1, x => x.TensorInfo("w", [32], type, 0), 128);
        Rejects(b, "tensor 'w' type", b["w.type"], $"unknown or retired ggml type id {type}");
    }

    [Fact]
    public void RowLengthNotAMultipleOfTheBlockSize()
    {
        var b = TensorFile(1, x => x.TensorInfo("w", [33, 2], Q4_0, 0), 128);
        Rejects(b, "tensor 'w' dims[0]", b["w.dims[0]"], "row length 33 is not a multiple of the Q4_0 block size 32");
    }

    [Fact]
    public void BadTensorNames()
    {
        string longName = new('n', GgufFile.MaxTensorNameBytes + 1);
        var b = TensorFile(1, x => x.TensorInfo(longName, [32], F32, 0), 128);
        Rejects(b, "tensor_info[0].name", b[longName + ".info"], "over the limit of 63");
        using (var f = Loads(TensorFile(1, x => x.TensorInfo(new string('n', 63), [32], F32, 0), 128)))
            Assert.Single(f.Tensors);

        b = TensorFile(2, x => x.TensorInfo("w", [8], F32, 0).TensorInfo("w", [8], F32, 32), 64);
        Rejects(b, "tensor 'w' name", b["w.info"], "duplicate tensor name");
    }

    // ------------------------------------------------------------------ tensor offsets

    [Fact]
    public void MisalignedDataOffset()
    {
        var b = TwoTensors(qOffset: 65, dataBytes: 200);
        Rejects(b, "tensor 'q' offset", b["q.offset"], "offset 65 is not a multiple of the alignment 32");
        b = TensorFile(1, x => x.TensorInfo("w", [8], F32, 16), 64);
        Rejects(b, "tensor 'w' offset", b["w.offset"], "not a multiple of the alignment");
    }

    [Theory]
    [InlineData(32UL)]  // overlaps w (0..63)
    [InlineData(0UL)]   // same bytes as w
    [InlineData(96UL)]  // gap after w
    public void OffsetsMustBeTheRunningPaddedSum(ulong qOffset)
    {
        var b = TwoTensors(qOffset, dataBytes: 200);
        Rejects(b, "tensor 'q' offset", b["q.offset"], $"offset {qOffset}, expected 64");
    }

    [Fact]
    public void TensorRunningPastTheEndByOneByte()
    {
        using (var ok = Loads(TwoTensors(dataBytes: 100))) Assert.Equal(2, ok.Tensors.Count);
        var b = TwoTensors(dataBytes: 99);
        Rejects(b, "tensor 'q' offset", b["q.offset"], "36 bytes at data offset 64");
        // the padding before the data section itself cut off
        b = TensorFile(1, x => x.TensorInfo("w", [8], F32, 0), 0);
        byte[] cut = b.ToArray().AsSpan(0, (int)b["data"] - 1).ToArray();
        var e = Rejects(new GgufBytes().Raw(cut), "tensor 'w' offset", b["w.offset"], "run past the end of the file");
        Assert.Contains("truncated", e.Message);
    }

    [Theory]
    [InlineData(ulong.MaxValue - 31)]       // offset + size wraps around 2^64
    [InlineData((1UL << 63) - 32)]          // offset + size wraps around 2^63
    [InlineData(1UL << 63)]                 // offset beyond int64
    public void OffsetPlusSizeOverflow(ulong offset)
    {
        var b = TensorFile(1, x => x.TensorInfo("w", [64], F32, offset), 256);
        Rejects(b, "tensor 'w' offset", b["w.offset"], $"offset {offset}, expected 0");
        b = TwoTensors(qOffset: offset, dataBytes: 256);
        Rejects(b, "tensor 'q' offset", b["q.offset"], $"offset {offset}, expected 64");
    }

    [Fact]
    public void TensorLargerThanTheWholeFile()
    {
        var b = TensorFile(1, x => x.TensorInfo("w", [1L << 40], F32, 0), 32);
        Rejects(b, "tensor 'w' offset", b["w.offset"], "cannot fit in a file of");
    }

    [Fact]
    public void TruncatedTensorTable()
    {
        // claims 2 tensors but has one info: the second name's length is read from the zero padding
        var b = TensorFile(2, x => x.TensorInfo("w", [8], F32, 0), 0);
        Rejects(b, "tensor_info[1].name", b["w.offset"] + 8, "empty tensor name");
        // and with the padding cut off too, the second name's length runs off the end
        byte[] cut = b.ToArray().AsSpan(0, (int)b["w.offset"] + 8 + 3).ToArray();
        Rejects(new GgufBytes().Raw(cut), "tensor_info[1].name length", b["w.offset"] + 8, "truncated");
    }

    [Fact]
    public void AccessorErrorsNameTheKeyAndItsOffset()
    {
        var b = new GgufBytes().Header(0, 3).KvString("name", "x").Mark("n").KvU32("n", 5).Mark("ids")
            .Key("ids", GgufValueType.Array).U32((uint)GgufValueType.UInt32).U64(2).U32(7).U32(0x80000000);
        string path = b.Save();
        using var f = GgufFile.Open(path);
        Assert.Equal(5, f.RequireInt("n"));
        var e = Assert.Throws<GgufFormatException>(() => f.RequireInt("name"));
        Assert.Equal(("metadata 'name'", 24L), (e.Field, e.Offset));
        Assert.Contains("expected integer, found String", e.Message);
        e = Assert.Throws<GgufFormatException>(() => f.RequireString("missing"));
        Assert.Equal($"{path}: invalid GGUF: metadata 'missing' at offset 24: required string key is missing", e.Message);
        e = Assert.Throws<GgufFormatException>(() => f.GetIntArray("ids"));
        Assert.Equal(("metadata 'ids'[1]", b["ids"]), (e.Field, e.Offset));
        Assert.Contains("2147483648 does not fit in int32", e.Message);
        Assert.Equal(b["n"], f.GetKeyOffset("n"));
        Assert.Null(f.GetArray<int>("ids"));            // a u32 array is not an int[] (though the CLR would cast it)
        Assert.Equal(new uint[] { 7, 0x80000000 }, f.GetArray<uint>("ids"));

        // a tensor info from another file is refused rather than read out of bounds
        using var other = GgufFile.Open(TestPaths.Stories260K);
        using var mine = Loads(TwoTensors());
        Assert.Throws<ArgumentException>(() => mine.GetTensor(other.Tensors[0]));
    }

    // ------------------------------------------------------------------ sweeps over real models

    public static TheoryData<string> Models => new() { "models/stories260K.gguf", "tests/data/llama-2-tiny-random.gguf" };

    private static string ModelPath(string relative) => Path.Combine(TestPaths.RepoRoot, relative);

    /// <summary>
    /// Parses <paramref name="length"/> bytes of <paramref name="bytes"/> (in memory, through the same parser as
    /// <see cref="GgufFile.Open"/>, or from <paramref name="path"/> when given): true if it loaded with every
    /// tensor inside the file, false on GgufFormatException; anything else fails the test.
    /// </summary>
    private static unsafe bool LoadsOrRejects(byte[] bytes, long length, string? path = null)
    {
        string name = path ?? "memory.gguf";
        fixed (byte* p = bytes)
        {
            try
            {
                using var f = path is null ? GgufFile.FromMemory(name, p, length) : GgufFile.Open(path);
                Assert.Equal(length, f.FileSize);
                foreach (var t in f.Tensors)
                {
                    Assert.True(t.Offset >= 0 && t.ByteSize > 0 && f.DataOffset + t.Offset + t.ByteSize <= f.FileSize, t.Name);
                    var v = f.GetTensor(t);
                    _ = v.Data[0] + v.Data[v.ByteLength - 1]; // touch both ends: no fault
                }
                return true;
            }
            catch (GgufFormatException e)
            {
                Assert.Equal(name, e.Path);
                Assert.DoesNotContain('\n', e.Message);
                Assert.InRange(e.Offset, 0, Math.Max(length, GgufFile.HeaderBytes));
                return false;
            }
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void TruncatedModelLoadsOnlyWhenAllTensorsFit(string model)
    {
        string src = ModelPath(model);
        long dataOffset, tensorsEnd, tableStart;
        using (var f = GgufFile.Open(src))
        {
            dataOffset = f.DataOffset;
            tableStart = f.Tensors[0].InfoOffset;
            tensorsEnd = f.Tensors.Max(t => f.DataOffset + t.Offset + t.ByteSize);
        }
        byte[] bytes = File.ReadAllBytes(src);
        long size = bytes.Length;

        var lengths = new SortedSet<long>();
        for (long n = 0; n <= Math.Min(dataOffset, 16384); n++) lengths.Add(n);      // every byte of the header region (its first 16 KiB)
        for (long n = tableStart; n <= tableStart + 256; n++) lengths.Add(n);        // every byte of the first tensor infos,
        for (long n = tableStart; n <= dataOffset; n += 7) lengths.Add(n);           // every 7th of the rest of the table,
        for (long n = dataOffset - 64; n <= dataOffset + 64; n++) lengths.Add(n);    // every byte around the data section start
        for (long n = 0; n <= dataOffset; n += 4099) lengths.Add(n);                // strided through the metadata
        for (long n = dataOffset; n <= size; n += (size - dataOffset) / 31) lengths.Add(n); // and through the tensor data
        for (long n = size - 64; n <= size; n++) lengths.Add(n);                     // the last bytes

        int loaded = 0;
        foreach (long n in lengths)
        {
            bool ok = LoadsOrRejects(bytes, n);
            Assert.True(ok == (n >= tensorsEnd), $"length {n}: loaded={ok}, all tensors end at {tensorsEnd}");
            if (ok) loaded++;
        }
        Assert.Equal(1, loaded); // only the complete file (its last tensor ends exactly at the end)

        // the same through real truncated files and the memory map, at a seeded sample of lengths
        string path = TestPaths.TempFile("truncated.gguf");
        File.Copy(src, path);
        var rng = new Random(7);
        var sample = new SortedSet<long> { size, size - 1, dataOffset, dataOffset - 1, tableStart, 1, 23, 24 };
        while (sample.Count < 40) sample.Add(rng.NextInt64(1, size));
        foreach (long n in sample.Reverse())
        {
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write)) fs.SetLength(n);
            Assert.Equal(n >= tensorsEnd, LoadsOrRejects(bytes, n, path));
        }
    }

    [Theory]
    [InlineData("models/stories260K.gguf", 2000, 260)]
    [InlineData("tests/data/llama-2-tiny-random.gguf", 300, 2)]
    public void RandomHeaderCorruptionsLoadOrFailCleanly(string model, int count, int seed)
    {
        string src = ModelPath(model);
        var anchors = new List<long> { 0, 4, 8, 16 };
        long dataOffset;
        using (var f = GgufFile.Open(src))
        {
            dataOffset = f.DataOffset;
            foreach (string k in f.Keys) anchors.Add(f.GetKeyOffset(k));
            foreach (var t in f.Tensors) anchors.Add(t.InfoOffset);
        }
        byte[] original = File.ReadAllBytes(src);
        byte[] bytes = (byte[])original.Clone();
        uint[] special = { 0, 1, 2, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 31, 32, 33, 63, 64 };

        var rng = new Random(seed);
        int loaded = 0, rejected = 0;
        for (int i = 0; i < count; i++)
        {
            // half anywhere in the header region, half near a structural field (counts, keys, types, tensor infos)
            long pos = rng.Next(2) == 0 ? rng.NextInt64(dataOffset) : Math.Min(anchors[rng.Next(anchors.Count)] + rng.Next(48), dataOffset - 1);
            int width;
            if (rng.Next(2) == 0)
            {
                width = 1;
                bytes[pos] = (byte)rng.Next(256);
            }
            else
            {
                width = 4;
                pos = Math.Min(pos, dataOffset - 4);
                uint v = rng.Next(2) == 0 ? special[rng.Next(special.Length)] : (uint)rng.NextInt64(1L << 32);
                BitConverter.TryWriteBytes(bytes.AsSpan((int)pos, 4), v);
            }
            if (LoadsOrRejects(bytes, bytes.Length)) loaded++; else rejected++;
            original.AsSpan((int)pos, width).CopyTo(bytes.AsSpan((int)pos));
        }
        Assert.Equal(count, loaded + rejected);
        Assert.True(rejected > count / 10, $"only {rejected} of {count} corruptions were rejected: the sweep is not reaching structure");
        Assert.True(loaded > 0, "no corruption loaded: string bytes should be harmless");
    }
}
