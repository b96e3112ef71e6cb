using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>How token states are pooled into one embedding (llama.cpp's <c>&lt;arch&gt;.pooling_type</c> values).</summary>
public enum PoolingKind
{
    /// <summary>The average of every token's final-normed hidden state (the default when the file says nothing).</summary>
    Mean = 1,

    /// <summary>The first token's state (the BOS / [CLS] position).</summary>
    Cls = 2,

    /// <summary>The last token's state.</summary>
    Last = 3,
}

/// <summary>
/// Text embeddings from a generative model: the prompt runs through the whole network, the last hidden state
/// after the final norm of each token is pooled (<see cref="Pooling"/>) and the result L2-normalized. Uses its
/// own KV cache (allocated on the first call), so a model's generation caches are left alone; like the model,
/// one caller at a time.
/// </summary>
public sealed class Embedder
{
    private readonly LlamaModel _model;
    private readonly Tokenizer _tokenizer;
    private KvCache? _cache;
    private float[] _hidden = [];

    public PoolingKind Pooling { get; }

    /// <summary>Floats per embedding (the model's hidden width).</summary>
    public int Dimensions => _model.Config.Dim;

    public Embedder(LlamaModel model, Tokenizer tokenizer)
    {
        _model = model;
        _tokenizer = tokenizer;
        Pooling = PoolingOf(model);
    }

    /// <summary>The pooling the file asks for (<c>&lt;arch&gt;.pooling_type</c>: 1 mean, 2 cls, 3 last), mean when absent.</summary>
    public static PoolingKind PoolingOf(LlamaModel model)
    {
        string key = model.Config.Architecture + ".pooling_type";
        if (model.File.Get(key) is null) return PoolingKind.Mean;
        long? v = model.File.GetInt(key);
        return v switch
        {
            1 => PoolingKind.Mean,
            2 => PoolingKind.Cls,
            3 => PoolingKind.Last,
            _ => throw new ModelFormatException(model.File.Path, key,
                $"pooling type {(v is { } x ? x.ToString(System.Globalization.CultureInfo.InvariantCulture) : "(not an integer)")} is not supported for embeddings (1 mean, 2 cls, 3 last)"),
        };
    }

    /// <summary>Tokenizes <paramref name="text"/> (with BOS when the vocabulary adds one) and embeds it.</summary>
    public float[] Embed(string text, out int tokenCount)
    {
        int[] tokens = _tokenizer.Encode(text, addBos: _tokenizer.Vocab.AddBos);
        if (tokens.Length == 0) throw new EdgeLlmException("the input is empty (no tokens to embed)");
        tokenCount = tokens.Length;
        return Embed(tokens);
    }

    /// <summary>The pooled, L2-normalized embedding of <paramref name="tokens"/>.</summary>
    public float[] Embed(ReadOnlySpan<int> tokens)
    {
        int n = tokens.Length, dim = Dimensions;
        if (n == 0) throw new EdgeLlmException("no tokens to embed");
        if (n > _model.ContextSize)
            throw new EdgeLlmException($"the input is {n} tokens, which does not fit in the context of {_model.ContextSize} tokens");
        _cache ??= _model.CreateCache();
        if (_hidden.Length < (long)n * dim) _hidden = new float[(long)n * dim];
        _model.HiddenStates(_cache, tokens, _hidden);
        var sum = new double[dim];
        int first = Pooling == PoolingKind.Last ? n - 1 : 0, last = Pooling == PoolingKind.Cls ? 1 : n;
        for (int t = first; t < last; t++)
            for (int i = 0; i < dim; i++) sum[i] += _hidden[t * dim + i];
        double norm = 0;
        for (int i = 0; i < dim; i++) norm += sum[i] * sum[i];
        norm = Math.Sqrt(norm);
        var e = new float[dim];
        // Mean then normalize equals normalize the sum: the 1/n factor cancels.
        if (norm > 0) for (int i = 0; i < dim; i++) e[i] = (float)(sum[i] / norm);
        if (!LogitCheck.AllFinite(e)) throw new EdgeLlmException($"{_model.File.Path}: the model produced a non-finite embedding");
        return e;
    }
}
