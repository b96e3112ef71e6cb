using System.IO.Hashing;

namespace EdgeLlm.Gguf;

/// <summary>
/// Per-tensor integrity checksums. edgellm-convert stores an XXH64 (seed 0) of every tensor's bytes (exactly
/// its <see cref="GgufTensorInfo.ByteSize"/> bytes, no alignment padding) as one u64 array under
/// <see cref="MetadataKey"/>, in the order of the tensor infos. <c>edgellm info --verify</c> recomputes them.
/// </summary>
public static class TensorChecksums
{
    public const string MetadataKey = "edgellm.tensor_xxh64";

    /// <summary>One tensor's stored and recomputed checksum.</summary>
    public readonly record struct Entry(string Name, ulong Expected, ulong Actual)
    {
        public bool Ok => Expected == Actual;
    }

    /// <summary>XXH64 of a tensor's bytes, read from the mapping in 1 GiB pieces (tensors can exceed 2 GiB).</summary>
    public static unsafe ulong Compute(TensorView t)
    {
        var h = new XxHash64();
        const long piece = 1L << 30;
        for (long at = 0; at < t.ByteLength; at += piece)
            h.Append(new ReadOnlySpan<byte>(t.Data + at, (int)Math.Min(piece, t.ByteLength - at)));
        return h.GetCurrentHashAsUInt64();
    }

    /// <summary>
    /// Recomputes every tensor's checksum and pairs it with the stored one. Throws <see cref="EdgeLlmException"/>
    /// when the file has no checksums or their count or type does not match the tensors.
    /// </summary>
    public static Entry[] Verify(GgufFile file)
    {
        var value = file.Get(MetadataKey)
            ?? throw new EdgeLlmException($"{file.Path}: no tensor checksums (metadata '{MetadataKey}' is absent; files written by edgellm-convert have it)");
        if (value.Value is not ulong[] stored || value.ElementType != GgufValueType.UInt64)
            throw new EdgeLlmException($"{file.Path}: metadata '{MetadataKey}' must be an array of u64, found {value.Type} of {value.ElementType}");
        if (stored.Length != file.Tensors.Count)
            throw new EdgeLlmException($"{file.Path}: metadata '{MetadataKey}' has {stored.Length} checksums for {file.Tensors.Count} tensors");
        var result = new Entry[stored.Length];
        for (int i = 0; i < stored.Length; i++)
        {
            var info = file.Tensors[i];
            result[i] = new Entry(info.Name, stored[i], Compute(file.GetTensor(info)));
        }
        return result;
    }
}
