namespace EdgeLlm.Compute;

/// <summary>
/// How a KV cache stores its K or V rows: float32, IEEE fp16, or ggml's Q8_0 (blocks of 32 values in 34 bytes:
/// an fp16 scale d and 32 int8 q, value = d·q, quantized along the row of KvDim values at store time).
/// llama.cpp's <c>--cache-type-k/-v</c> names (f32, f16, q8_0).
/// </summary>
public enum KvCacheType
{
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
}

/// <summary>Names, sizes and shape rules of <see cref="KvCacheType"/>.</summary>
public static class KvCacheTypes
{
    /// <summary>Values per Q8_0 block.</summary>
    public const int Q8Block = 32;

    /// <summary>Bytes per Q8_0 block (fp16 scale + 32 int8).</summary>
    public const int Q8BlockBytes = 34;

    public static string Name(KvCacheType t) => t switch
    {
        KvCacheType.F32 => "f32",
        KvCacheType.F16 => "f16",
        KvCacheType.Q8_0 => "q8_0",
        _ => $"type {(int)t}",
    };

    /// <summary>Parses f32, f16 or q8_0 (case-insensitive); false for anything else.</summary>
    public static bool TryParse(string? s, out KvCacheType type)
    {
        switch (s?.Trim().ToLowerInvariant())
        {
            case "f32": type = KvCacheType.F32; return true;
            case "f16": type = KvCacheType.F16; return true;
            case "q8_0": type = KvCacheType.Q8_0; return true;
            default: type = KvCacheType.F32; return false;
        }
    }

    public static bool IsKnown(KvCacheType t) => t is KvCacheType.F32 or KvCacheType.F16 or KvCacheType.Q8_0;

    /// <summary>Bytes of one cached row of <paramref name="kvDim"/> values (kvDim must suit the type, see <see cref="Check"/>).</summary>
    public static long RowBytes(KvCacheType t, int kvDim) => t switch
    {
        KvCacheType.F32 => 4L * kvDim,
        KvCacheType.F16 => 2L * kvDim,
        KvCacheType.Q8_0 => (long)kvDim / Q8Block * Q8BlockBytes,
        _ => throw new ArgumentOutOfRangeException(nameof(t), $"unknown kv cache type {(int)t}"),
    };

    /// <summary>
    /// Throws <see cref="EdgeLlmException"/> when rows of kvDim values in heads of headDim cannot be stored as
    /// <paramref name="t"/>: Q8_0 needs kvDim a multiple of 32 and each head either whole blocks (headDim a multiple
    /// of 32) or a whole fraction of one (32 a multiple of headDim), so no head straddles two blocks.
    /// </summary>
    public static void Check(KvCacheType t, int kvDim, int headDim, string which)
    {
        if (!IsKnown(t)) throw new EdgeLlmException($"{which} cache type {(int)t} is not one of f32, f16, q8_0");
        if (t != KvCacheType.Q8_0) return;
        if (kvDim % Q8Block != 0 || headDim < 1 || (headDim % Q8Block != 0 && Q8Block % headDim != 0))
            throw new EdgeLlmException($"{which} cache type q8_0 needs rows in blocks of {Q8Block} that no head straddles; this model has kv rows of {kvDim} in heads of {headDim} (use f16)");
    }
}
