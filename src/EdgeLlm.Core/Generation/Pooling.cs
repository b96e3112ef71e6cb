namespace EdgeLlm.Generation;

/// <summary>Sentence embeddings from per-token hidden states.</summary>
public static class Pooling
{
    /// <summary>
    /// Mean of the <paramref name="tokens"/> rows of <paramref name="hidden"/> (token-major, <paramref name="dim"/> floats
    /// each), scaled to unit L2 length, into <paramref name="result"/>. Sums in double so a long text loses nothing.
    /// An all-zero mean stays zero.
    /// </summary>
    public static void MeanL2(ReadOnlySpan<float> hidden, int tokens, int dim, Span<float> result)
    {
        if (tokens < 1) throw new ArgumentOutOfRangeException(nameof(tokens), "at least one token is needed");
        if (hidden.Length < (long)tokens * dim) throw new ArgumentException($"hidden holds {hidden.Length} floats, {(long)tokens * dim} needed", nameof(hidden));
        if (result.Length < dim) throw new ArgumentException($"result holds {result.Length} floats, {dim} needed", nameof(result));
        var sum = new double[dim];
        for (int t = 0; t < tokens; t++)
        {
            var row = hidden.Slice(t * dim, dim);
            for (int i = 0; i < dim; i++) sum[i] += row[i];
        }
        double norm = 0;
        for (int i = 0; i < dim; i++) { sum[i] /= tokens; norm += sum[i] * sum[i]; }
        norm = Math.Sqrt(norm);
        double scale = norm > 0 ? 1 / norm : 0;
        for (int i = 0; i < dim; i++) result[i] = (float)(sum[i] * scale);
    }
}
