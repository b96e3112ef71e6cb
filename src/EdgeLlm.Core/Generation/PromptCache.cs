using System.Buffers.Binary;
using System.IO.Hashing;
using EdgeLlm.Compute;
using EdgeLlm.IO;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>
/// A saved prompt (<c>--prompt-cache FILE</c>): the token ids of an evaluated prompt and the KV cache rows of their
/// positions, in the cache's own types, so a later run with the same model and cache types evaluates only what
/// follows the longest common prefix. Layout (little-endian):
/// <code>
/// "EDGEPCF\n"  u32 version (1)  16-byte model identity
/// u32 layers  u32 kvDim  u32 K type  u32 V type  u32 K row bytes  u32 V row bytes  u32 tokens n  u32 0
/// i32 token ids[n]
/// per layer: K rows [n · K row bytes], V rows [n · V row bytes]
/// XXH128 of every byte before it (16 bytes)
/// </code>
/// The model identity is XXH128 over the GGUF file's size, its bytes before the tensor data (metadata, which holds
/// edgellm-convert's tensor checksums when present, and the tensor infos) and the first and last 64 KiB of the
/// tensor data (so two random-weight files with the same header differ). Every field is checked on load and the
/// file's length must be exactly what the header implies; any mismatch or corruption is an
/// <see cref="EdgeLlmException"/> of one line naming the file. Written through <see cref="OutputFile"/> (complete or
/// absent). (XXH128, not SHA-256: the checks are against accidents, not an adversary, and the .NET SHA-256 on Linux
/// loads OpenSSL, which the binary otherwise never needs.)
/// </summary>
public static class PromptCache
{
    public const uint Version = 1;
    private static ReadOnlySpan<byte> Magic => "EDGEPCF\n"u8;
    private const int IdentityBytes = 16;
    private const int FieldsAt = 8 + 4 + IdentityBytes;
    private const int HeaderBytes = FieldsAt + 8 * 4;
    private const int HashBytes = 16;
    private const int DataSample = 64 * 1024;

    /// <summary>XXH128 identifying the model file (see the type's summary).</summary>
    public static byte[] ModelIdentity(LlamaModel model)
    {
        var file = model.File;
        var h = new XxHash128();
        Span<byte> size = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(size, file.FileSize);
        h.Append(size);
        long data = Math.Min(file.DataOffset, file.FileSize);
        if (file.InMemory)
        {
            // A model read into memory (or the one embedded in the binary, which has no file): its own copy of the
            // bytes, the same ones the file holds. A mapped file is read through a stream instead, so a file truncated
            // on disk since it was mapped is an error, not a bus fault on the missing pages.
            unsafe
            {
                byte* p = file.BasePointer;
                h.Append(new ReadOnlySpan<byte>(p, checked((int)data)));
                long tail = Math.Max(data, file.FileSize - DataSample), head = Math.Min(file.FileSize, data + DataSample);
                h.Append(new ReadOnlySpan<byte>(p + data, (int)(head - data)));
                h.Append(new ReadOnlySpan<byte>(p + tail, (int)(file.FileSize - tail)));
            }
            return h.GetCurrentHash();
        }
        using var fs = new FileStream(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var buf = new byte[1 << 16];
        void Range(long from, long to)
        {
            fs.Position = from;
            while (from < to)
            {
                int n = fs.Read(buf, 0, (int)Math.Min(buf.Length, to - from));
                if (n <= 0) throw new EdgeLlmException($"{file.Path}: the model file is shorter than it was when loaded");
                h.Append(buf.AsSpan(0, n));
                from += n;
            }
        }
        Range(0, data);
        Range(data, Math.Min(file.FileSize, data + DataSample));
        Range(Math.Max(data, file.FileSize - DataSample), file.FileSize);
        return h.GetCurrentHash();
    }

    /// <summary>Writes the first <paramref name="tokens"/>.Length positions of the model's cache and the tokens to <paramref name="path"/>.</summary>
    public static void Save(string path, LlamaModel model, ReadOnlySpan<int> tokens)
    {
        var cache = model.Cache;
        int n = tokens.Length;
        if (n < 1 || n > cache.Filled) throw new ArgumentOutOfRangeException(nameof(tokens), $"{n} tokens, {cache.Filled} cached positions");
        byte[] identity = ModelIdentity(model);
        // A refused write (full disk, file-size limit) is the OutputFile's one-line OutputWriteException; the partial file goes with it.
        using var output = OutputFile.Create(path);
        WriteBody(output, model, tokens, identity, cache);
    }

    private static void WriteBody(OutputFile output, LlamaModel model, ReadOnlySpan<int> tokens, byte[] identity, KvCache cache)
    {
        int n = tokens.Length;
        var hash = new XxHash128();
        void Write(ReadOnlySpan<byte> bytes)
        {
            hash.Append(bytes);
            output.Stream.Write(bytes);
        }
        var header = new byte[HeaderBytes];
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), Version);
        identity.CopyTo(header, 12);
        Span<byte> f = header.AsSpan(FieldsAt);
        BinaryPrimitives.WriteUInt32LittleEndian(f, (uint)cache.LayerCount);
        BinaryPrimitives.WriteUInt32LittleEndian(f[4..], (uint)cache.KvDim);
        BinaryPrimitives.WriteUInt32LittleEndian(f[8..], (uint)cache.KeyType);
        BinaryPrimitives.WriteUInt32LittleEndian(f[12..], (uint)cache.ValueType);
        BinaryPrimitives.WriteUInt32LittleEndian(f[16..], (uint)cache.KeyRowBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(f[20..], (uint)cache.ValueRowBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(f[24..], (uint)n);
        Write(header);
        var ids = new byte[4L * n];
        for (int i = 0; i < n; i++) BinaryPrimitives.WriteInt32LittleEndian(ids.AsSpan(4 * i), tokens[i]);
        Write(ids);
        var rows = new byte[n * Math.Max(cache.KeyRowBytes, cache.ValueRowBytes)];
        for (int l = 0; l < cache.LayerCount; l++)
        {
            var k = rows.AsSpan(0, (int)(n * cache.KeyRowBytes));
            model.Backend.CacheRows(cache, l, values: false, 0, n, k, write: false);
            Write(k);
            var v = rows.AsSpan(0, (int)(n * cache.ValueRowBytes));
            model.Backend.CacheRows(cache, l, values: true, 0, n, v, write: false);
            Write(v);
        }
        output.Stream.Write(hash.GetCurrentHash());
        output.Commit();
    }

    /// <summary>
    /// Reads <paramref name="path"/>, checks it against the model and its cache, writes its rows into the cache
    /// (positions 0..n−1, <see cref="KvCache.Filled"/> = n) and returns its n token ids.
    /// </summary>
    public static int[] Load(string path, LlamaModel model)
    {
        var cache = model.Cache;
        EdgeLlmException Refuse(string why) => new($"{path}: prompt cache refused: {why}");
        byte[] bytes;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            long length = fs.Length;
            if (length < HeaderBytes + HashBytes) throw Refuse($"{length} bytes is shorter than the smallest prompt cache (truncated?)");
            // The longest valid file for this model: every position but the last, in the biggest row types.
            long max = HeaderBytes + HashBytes + (long)cache.Size * (4 + cache.LayerCount * 2 * 4L * cache.KvDim);
            if (length > max || length > Array.MaxLength) throw Refuse($"{length} bytes is more than a prompt cache for this model can hold");
            bytes = new byte[length];
            fs.ReadExactly(bytes);
        }
        var span = bytes.AsSpan();
        if (!span[..8].SequenceEqual(Magic)) throw Refuse("not an edgellm prompt cache (bad magic)");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(span[8..]);
        if (version != Version) throw Refuse($"format version {version}, this build reads version {Version}");
        var f = span[FieldsAt..];
        uint layers = BinaryPrimitives.ReadUInt32LittleEndian(f), kvDim = BinaryPrimitives.ReadUInt32LittleEndian(f[4..]);
        uint kType = BinaryPrimitives.ReadUInt32LittleEndian(f[8..]), vType = BinaryPrimitives.ReadUInt32LittleEndian(f[12..]);
        uint kRow = BinaryPrimitives.ReadUInt32LittleEndian(f[16..]), vRow = BinaryPrimitives.ReadUInt32LittleEndian(f[20..]);
        uint n = BinaryPrimitives.ReadUInt32LittleEndian(f[24..]), zero = BinaryPrimitives.ReadUInt32LittleEndian(f[28..]);
        // Bounded before any arithmetic: the sizes below cannot overflow a long.
        if (layers > 1 << 16 || kvDim > 1 << 20 || kRow > 1 << 24 || vRow > 1 << 24 || n > 1 << 24 || zero != 0)
            throw Refuse("header fields out of range (corrupted)");
        long expected = HeaderBytes + 4L * n + (long)layers * n * ((long)kRow + vRow) + HashBytes;
        if (bytes.LongLength != expected)
            throw Refuse($"{bytes.LongLength} bytes where its header implies {expected} (truncated or corrupted)");
        var stored = span[^HashBytes..];
        if (!XxHash128.Hash(span[..^HashBytes]).AsSpan().SequenceEqual(stored)) throw Refuse("checksum mismatch (corrupted)");
        if (!span.Slice(12, IdentityBytes).SequenceEqual(ModelIdentity(model)))
            throw Refuse($"it was saved for another model (not {model.File.Path})");
        if (layers != cache.LayerCount || kvDim != cache.KvDim)
            throw Refuse($"shape {layers} layers x kv {kvDim}, the model has {cache.LayerCount} x {cache.KvDim}");
        if (kType != (uint)cache.KeyType || vType != (uint)cache.ValueType)
            throw Refuse($"saved with cache types K {KvCacheTypes.Name((KvCacheType)kType)}, V {KvCacheTypes.Name((KvCacheType)vType)}; this run uses K {KvCacheTypes.Name(cache.KeyType)}, V {KvCacheTypes.Name(cache.ValueType)} (--cache-type-k/-v)");
        if (kRow != cache.KeyRowBytes || vRow != cache.ValueRowBytes) throw Refuse($"row sizes {kRow}/{vRow} bytes, expected {cache.KeyRowBytes}/{cache.ValueRowBytes}");
        if (n < 1 || n >= cache.Size) throw Refuse($"{n} tokens do not fit in the context of {cache.Size} (raise -c)");
        var tokens = new int[n];
        for (int i = 0; i < n; i++)
        {
            tokens[i] = BinaryPrimitives.ReadInt32LittleEndian(span[(HeaderBytes + 4 * i)..]);
            if ((uint)tokens[i] >= (uint)model.VocabSize) throw Refuse($"token {tokens[i]} at index {i} is not in the vocabulary of {model.VocabSize}");
        }
        long at = HeaderBytes + 4L * n;
        cache.Clear();
        for (int l = 0; l < cache.LayerCount; l++)
        {
            int kb = (int)(n * kRow), vb = (int)(n * vRow);
            model.Backend.CacheRows(cache, l, values: false, 0, (int)n, span.Slice((int)at, kb), write: true);
            at += kb;
            model.Backend.CacheRows(cache, l, values: true, 0, (int)n, span.Slice((int)at, vb), write: true);
            at += vb;
        }
        cache.Filled = (int)n;
        return tokens;
    }
}
