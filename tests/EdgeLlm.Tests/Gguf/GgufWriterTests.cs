using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Gguf;

/// <summary>
/// GgufWriter: exact value round trips through the reader, hand-computed layouts for alignment 32 and 64,
/// byte-identical rewrites of real files, and the NAME.partial protocol on failure.
/// </summary>
public class GgufWriterTests
{
    private static GgufFile WriteAndOpen(GgufWriter w, string name = "out.gguf")
    {
        string path = TestPaths.TempFile(name);
        w.Write(path);
        Assert.False(File.Exists(path + ".partial"));
        return GgufFile.Open(path);
    }

    /// <summary>Deep equality of two metadata values, comparing floats by their bits.</summary>
    private static void AssertSameValue(GgufValue expected, GgufValue actual, string what)
    {
        Assert.True(expected.Type == actual.Type, $"{what}: type {actual.Type}, expected {expected.Type}");
        switch (expected.Value)
        {
            case float f: Assert.Equal(BitConverter.SingleToUInt32Bits(f), BitConverter.SingleToUInt32Bits((float)actual.Value)); break;
            case double d: Assert.Equal(BitConverter.DoubleToUInt64Bits(d), BitConverter.DoubleToUInt64Bits((double)actual.Value)); break;
            case float[] fa: Assert.Equal(Array.ConvertAll(fa, BitConverter.SingleToUInt32Bits), Array.ConvertAll((float[])actual.Value, BitConverter.SingleToUInt32Bits)); break;
            case double[] da: Assert.Equal(Array.ConvertAll(da, BitConverter.DoubleToUInt64Bits), Array.ConvertAll((double[])actual.Value, BitConverter.DoubleToUInt64Bits)); break;
            case GgufValue[] inner:
            {
                var got = Assert.IsType<GgufValue[]>(actual.Value);
                Assert.Equal(inner.Length, got.Length);
                for (int i = 0; i < inner.Length; i++) AssertSameValue(inner[i], got[i], $"{what}[{i}]");
                break;
            }
            default:
                Assert.Equal(expected.Value.GetType(), actual.Value.GetType());
                Assert.Equal(expected.Value, actual.Value);
                break;
        }
        Assert.Equal(expected.ElementType, actual.ElementType);
    }

    public static readonly (string Key, GgufValue Value)[] Scalars =
    {
        ("u8", GgufValue.Of((byte)200)),
        ("i8", GgufValue.Of((sbyte)-128)),
        ("u16", GgufValue.Of((ushort)65000)),
        ("i16", GgufValue.Of((short)-32768)),
        ("u32", GgufValue.Of(4_000_000_000u)),
        ("i32", GgufValue.Of(int.MinValue)),
        ("f32", GgufValue.Of(1e-5f)),
        ("f32.nan", GgufValue.Of(BitConverter.UInt32BitsToSingle(0x7FC00123))), // a NaN payload survives
        ("f32.negzero", GgufValue.Of(-0.0f)),
        ("f32.subnormal", GgufValue.Of(float.Epsilon)),
        ("bool.true", GgufValue.Of(true)),
        ("bool.false", GgufValue.Of(false)),
        ("str", GgufValue.Of("héllo, 世界 🙂\n\"quoted\"")),
        ("str.empty", GgufValue.Of("")),
        ("u64", GgufValue.Of(ulong.MaxValue)),
        ("i64", GgufValue.Of(long.MinValue)),
        ("f64", GgufValue.Of(Math.PI)),
        ("f64.inf", GgufValue.Of(double.NegativeInfinity)),
    };

    public static readonly (string Key, GgufValue Value)[] Arrays =
    {
        ("a.u8", GgufValue.Of(new byte[] { 0, 1, 255 })),
        ("a.i8", GgufValue.Of(new sbyte[] { -128, 0, 127 })),
        ("a.u16", GgufValue.Of(new ushort[] { 0, 65535 })),
        ("a.i16", GgufValue.Of(new short[] { -32768, 32767 })),
        ("a.u32", GgufValue.Of(new uint[] { 0, uint.MaxValue })),
        ("a.i32", GgufValue.Of(new[] { int.MinValue, -1, 0, int.MaxValue })),
        ("a.f32", GgufValue.Of(new[] { 0.1f, -2.5f, float.PositiveInfinity, float.NaN })),
        ("a.bool", GgufValue.Of(new[] { true, false, true })),
        ("a.str", GgufValue.Of(new[] { "", "a", "▁the", "<0x0A>", "日本" })),
        ("a.u64", GgufValue.Of(new[] { 0UL, ulong.MaxValue })),
        ("a.i64", GgufValue.Of(new[] { long.MinValue, long.MaxValue })),
        ("a.f64", GgufValue.Of(new[] { Math.E, -0.0, double.MaxValue })),
        ("a.empty.i32", GgufValue.Of(Array.Empty<int>())),
        ("a.empty.str", GgufValue.Of(Array.Empty<string>())),
        ("a.nested", GgufValue.Of(new[]
        {
            GgufValue.Of(new byte[] { 1, 2, 3 }),
            GgufValue.Of(new[] { "x", "" }),
            GgufValue.Of(Array.Empty<int>()),
            GgufValue.Of(new[] { GgufValue.Of(new[] { 1.5 }), GgufValue.Of(Array.Empty<GgufValue>()) }),
        })),
    };

    [Fact]
    public void EveryMetadataTypeRoundTripsExactly()
    {
        var w = new GgufWriter();
        foreach (var (k, v) in Scalars) w.Set(k, v);
        foreach (var (k, v) in Arrays) w.Set(k, v);
        using var f = WriteAndOpen(w);
        Assert.Equal(Scalars.Select(p => p.Key).Concat(Arrays.Select(p => p.Key)), f.Keys);
        foreach (var (k, v) in Scalars.Concat(Arrays)) AssertSameValue(v, f.Get(k)!, k);
        Assert.Empty(f.Tensors);
        // with no tensors nothing follows the metadata: no padding (as gguf-py writes vocab-only files)
        Assert.Equal(f.FileSize, f.DataOffset);
    }

    [Fact]
    public void ScalarBytesAreExactlyTheSpecLayout()
    {
        string path = TestPaths.TempFile("one.gguf");
        new GgufWriter().Set("ab", GgufValue.Of((short)-2)).Set("s", "hé").Write(path);
        byte[] expected =
        {
            0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0,          // "GGUF", version 3
            0, 0, 0, 0, 0, 0, 0, 0,                      // tensor_count 0
            2, 0, 0, 0, 0, 0, 0, 0,                      // metadata_kv_count 2
            2, 0, 0, 0, 0, 0, 0, 0, (byte)'a', (byte)'b', // key "ab"
            3, 0, 0, 0, 0xFE, 0xFF,                      // type i16, -2
            1, 0, 0, 0, 0, 0, 0, 0, (byte)'s',           // key "s"
            8, 0, 0, 0,                                  // type string
            3, 0, 0, 0, 0, 0, 0, 0, (byte)'h', 0xC3, 0xA9, // "hé" in UTF-8
        };
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData(32u)]
    [InlineData(64u)]
    public void TensorLayoutFollowsTheAlignment(uint alignment)
    {
        var rng = new Random((int)alignment);
        var specs = new (string Name, GgmlType Type, long[] Dims, long Size)[]
        {
            ("a", GgmlType.F32, new long[] { 3 }, 12),
            ("bb", GgmlType.Q4_0, new long[] { 32, 3 }, 54),
            ("ccc", GgmlType.F16, new long[] { 7, 1, 1 }, 14),
            ("d", GgmlType.Q8_0, new long[] { 64, 1, 2, 1 }, 136),
        };
        var w = new GgufWriter(alignment).Set("general.architecture", "llama");
        var data = new List<byte[]>();
        foreach (var s in specs)
        {
            Assert.Equal(s.Size, GgufWriter.ByteSize(s.Type, s.Dims));
            byte[] bytes = new byte[s.Size];
            rng.NextBytes(bytes);
            data.Add(bytes);
            w.AddTensor(s.Name, s.Type, s.Dims, bytes);
        }

        string path = TestPaths.TempFile("aligned.gguf");
        w.Write(path);
        byte[] file = File.ReadAllBytes(path);

        // hand-computed layout
        long kvBytes = (alignment == 32 ? 0 : 8 + 17 + 4 + 4) + 8 + 20 + 4 + 8 + 5;
        long infoBytes = specs.Sum(s => 8 + s.Name.Length + 4 + 8 * s.Dims.Length + 4 + 8);
        long dataOffset = GgufFile.AlignUp(24 + kvBytes + infoBytes, alignment);
        var offsets = new long[specs.Length];
        long running = 0;
        for (int i = 0; i < specs.Length; i++) { offsets[i] = running; running += GgufFile.AlignUp(specs[i].Size, alignment); }
        Assert.Equal(dataOffset + running, file.Length); // the last tensor is padded too

        using var f = GgufFile.Open(path);
        Assert.Equal(alignment, f.Alignment);
        Assert.Equal(dataOffset, f.DataOffset);
        Assert.Equal(0, f.DataOffset % alignment);
        if (alignment != 32)
        {
            Assert.Equal("general.alignment", f.Keys[0]);
            Assert.Equal(GgufValueType.UInt32, f.Get("general.alignment")!.Type);
        }
        else
        {
            Assert.False(f.ContainsKey("general.alignment"));
        }
        for (int i = 0; i < specs.Length; i++)
        {
            var t = f.Tensors[i];
            Assert.Equal(specs[i].Name, t.Name);
            Assert.Equal(specs[i].Dims, t.Dims);
            Assert.Equal(offsets[i], t.Offset);
            Assert.Equal(0, t.Offset % alignment);
            Assert.Equal(data[i], f.GetTensor(t).Span.ToArray());
            long end = dataOffset + t.Offset + specs[i].Size;
            long padEnd = dataOffset + (i + 1 < specs.Length ? offsets[i + 1] : running);
            Assert.All(file[(int)end..(int)padEnd], b => Assert.Equal(0, b)); // padding is zeros
        }
        Assert.All(file[(int)(24 + kvBytes + infoBytes)..(int)dataOffset], b => Assert.Equal(0, b));
    }

    [Fact]
    public void ZeroTensorFileHasNoPadding()
    {
        using var f = WriteAndOpen(new GgufWriter().Set("x", 1u));
        Assert.Equal(24 + 8 + 1 + 4 + 4, f.FileSize);
    }

    // ------------------------------------------------------------------ byte-identical rewrites of real files

    [Theory]
    [InlineData("models/stories260K.gguf")]
    [InlineData("tests/data/llama-2-tiny-random.gguf")]
    [InlineData("tests/data/ggml-vocab-llama-spm.gguf")]
    public void RewriteIsByteIdentical(string relative)
    {
        string src = Path.Combine(TestPaths.RepoRoot, relative);
        using var f = GgufFile.Open(src);
        var w = new GgufWriter(f.Alignment).CopyMetadataFrom(f);
        foreach (var t in f.Tensors)
        {
            var info = t;
            w.AddTensor(t.Name, t.Type, t.Dims, s => s.Write(f.GetTensor(info).Span)); // streamed from the map
        }
        string outPath = TestPaths.TempFile("rewrite.gguf");
        w.Write(outPath);
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(outPath));
    }

    [Fact]
    public void RewriteKeepsAnAlignmentKeyWhereTheSourceHasIt()
    {
        // general.alignment = 64 in the middle of the metadata, one F32 tensor
        var b = new GgufBytes().Header(1, 3).KvString("a", "x").KvU32("general.alignment", 64).KvU32("b", 2)
            .TensorInfo("w", [4], (uint)GgmlType.F32, 0).Pad(64).Raw(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }).Pad(64);
        string src = b.Save("aligned64.gguf");
        using var f = GgufFile.Open(src);
        Assert.Equal(64u, f.Alignment);
        var w = new GgufWriter(64).CopyMetadataFrom(f);
        w.AddTensor("w", GgmlType.F32, [4], f.GetTensor("w")!.Value.Span.ToArray());
        string outPath = TestPaths.TempFile("copy64.gguf");
        w.Write(outPath);
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(outPath));

        // copied into a default (32) writer, the 64 is dropped and the file is laid out for 32
        using var f32 = WriteAndOpen(new GgufWriter().CopyMetadataFrom(f));
        Assert.Equal(new[] { "a", "b" }, f32.Keys);
        Assert.Equal(32u, f32.Alignment);
    }

    // ------------------------------------------------------------------ failures leave nothing behind

    [Theory]
    [InlineData(35)]  // one byte short
    [InlineData(37)]  // one byte too many
    [InlineData(0)]
    public void StreamingCallbackWritingTheWrongSizeFails(int written)
    {
        string path = TestPaths.TempFile("bad.gguf");
        var w = new GgufWriter()
            .AddTensor("ok", GgmlType.F32, [4], new byte[16])
            .AddTensor("q", GgmlType.Q4_0, [64], s => s.Write(new byte[written])); // 2 blocks = 36 bytes
        var e = Assert.Throws<InvalidOperationException>(() => w.Write(path));
        Assert.Contains($"tensor 'q': {written} bytes written, 36 expected", e.Message);
        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".partial"));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!));
    }

    [Fact]
    public void FailedWriteLeavesAnExistingFileUntouchedAndASuccessfulOneReplacesIt()
    {
        string path = TestPaths.TempFile("model.gguf");
        new GgufWriter().Set("version", "old").AddTensor("w", GgmlType.F32, [2], new byte[8]).Write(path);
        byte[] before = File.ReadAllBytes(path);

        var failing = new GgufWriter().Set("version", "new")
            .AddTensor("w", GgmlType.F32, [2], _ => throw new IOException("source read failed"));
        Assert.Throws<IOException>(() => failing.Write(path));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.False(File.Exists(path + ".partial"));

        new GgufWriter().Set("version", "new").AddTensor("w", GgmlType.F32, [2], new byte[] { 0, 0, 0x80, 0x3F, 0, 0, 0, 0x40 }).Write(path);
        using var f = GgufFile.Open(path);
        Assert.Equal("new", f.GetString("version"));
        Assert.Equal(new[] { 1f, 2f }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensor("w")!.Value.Span).ToArray());
        Assert.False(File.Exists(path + ".partial"));
    }

    [Fact]
    public void DiskFullMidwayIsAnIOExceptionAndLeavesNoFile()
    {
        // Simulated: the callback has written half its tensor when the device reports ENOSPC.
        string path = TestPaths.TempFile("full.gguf");
        var w = new GgufWriter().AddTensor("w", GgmlType.F32, [1024], s =>
        {
            s.Write(new byte[2048]);
            throw new IOException("No space left on device");
        });
        var e = Assert.Throws<IOException>(() => w.Write(path));
        Assert.Equal("No space left on device", e.Message);
        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".partial"));

        // and a non-seekable target stream that fails after 100 bytes
        var full = new FailingStream(100);
        Assert.Throws<IOException>(() => new GgufWriter().Set("k", "v").AddTensor("w", GgmlType.F32, [64], new byte[256]).Write(full));
        Assert.Equal(100, full.Written);
    }

    /// <summary>A write-only stream that accepts <c>capacity</c> bytes, then fails like a full disk.</summary>
    private sealed class FailingStream(long capacity) : Stream
    {
        public long Written { get; private set; }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (Written + buffer.Length > capacity) { Written = capacity; throw new IOException("No space left on device"); }
            Written += buffer.Length;
        }
    }

    // ------------------------------------------------------------------ argument validation

    [Fact]
    public void InvalidArgumentsAreRejectedUpFront()
    {
        var w = new GgufWriter();
        Assert.Throws<ArgumentException>(() => new GgufWriter(48));
        Assert.Throws<ArgumentException>(() => new GgufWriter(0));
        Assert.Throws<ArgumentException>(() => w.Set("", "x"));
        Assert.Throws<ArgumentException>(() => w.Set(new string('k', GgufFile.MaxKeyBytes + 1), "x"));
        Assert.Throws<ArgumentException>(() => w.Set("bad", new GgufValue(GgufValueType.UInt32, 5)));          // int in a u32
        Assert.Throws<ArgumentException>(() => w.Set("bad", new GgufValue(GgufValueType.Array, new int[1], GgufValueType.Float32)));
        Assert.Throws<ArgumentException>(() => w.Set("bad", new GgufValue(GgufValueType.Array, new uint[1], GgufValueType.Int32)));
        Assert.Throws<ArgumentException>(() => w.Set("bad", new GgufValue(GgufValueType.Array, new[] { "a", null! }, GgufValueType.String)));
        Assert.Throws<ArgumentException>(() => w.Set("bad", new GgufValue(GgufValueType.Array, new[] { GgufValue.Of(1) }, GgufValueType.Array)));
        Assert.Throws<ArgumentException>(() => w.Set("general.alignment", 64u)); // the alignment is chosen in the constructor
        Assert.Throws<ArgumentException>(() => w.Set("general.alignment", 32));  // and is a u32
        w.Set("general.alignment", 32u);                                           // restating it is fine

        Assert.Throws<ArgumentException>(() => w.AddTensor("", GgmlType.F32, [1], new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('n', 64), GgmlType.F32, [1], new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [], new byte[0]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [1, 1, 1, 1, 1], new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [4, 0], new byte[0]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [4, -1], new byte[0]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", (GgmlType)5, [32], new byte[18]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.Q4_0, [33], new byte[18]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [1L << 40, 1L << 40], _ => { }));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [4], new byte[15]));
        w.AddTensor("t", GgmlType.F32, [4], new byte[16]);
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [4], new byte[16]));
        // the failed calls left no trace: one tensor, no bad keys
        using var f = WriteAndOpen(w);
        Assert.Equal(new[] { "general.alignment" }, f.Keys);
        Assert.Equal("t", Assert.Single(f.Tensors).Name);
    }
}
