using EdgeLlm.Backends;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using Microsoft.Extensions.AI;

namespace EdgeLlm.AI;

/// <summary>
/// A GGUF model as a Microsoft.Extensions.AI embedding generator: each text is tokenized (with BOS where the model
/// adds one), run through the model, and its last hidden states after the final norm are pooled as the file says
/// (mean unless <c>&lt;arch&gt;.pooling_type</c> asks for the first or last token) and scaled to unit length by the
/// same <see cref="Embedder"/> the server's /v1/embeddings uses, so cosine similarity is a dot product. A decoder-only chat model
/// gives usable but not state-of-the-art embeddings; a GGUF of an embedding model of the same architecture gives
/// better ones. One text runs at a time.
/// </summary>
public sealed class EdgeLlmEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly LlamaModel _model;
    private readonly bool _ownsModel;
    private readonly Tokenizer _tokenizer;
    private readonly Embedder _embedder;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly EmbeddingGeneratorMetadata _metadata;

    /// <summary>Loads <paramref name="modelPath"/> (a GGUF file) on the device <paramref name="options"/> name (CPU by default).</summary>
    public EdgeLlmEmbeddingGenerator(string modelPath, BackendOptions? options = null)
        : this(LlamaModel.Load(modelPath, options), ownsModel: true)
    {
    }

    /// <summary>Wraps a loaded model (not shared with a running chat client); disposes it only when <paramref name="ownsModel"/>.</summary>
    public EdgeLlmEmbeddingGenerator(LlamaModel model, bool ownsModel = false)
    {
        _model = model;
        _ownsModel = ownsModel;
        try
        {
            _tokenizer = Tokenizer.For(model);
            _embedder = new Embedder(model, _tokenizer);
        }
        catch
        {
            if (ownsModel) model.Dispose();
            throw;
        }
        _metadata = new EmbeddingGeneratorMetadata("edgellm", null, EdgeLlmChatClient.ModelId(model), model.Config.Dim);
    }

    /// <summary>The length of every embedding: the model's hidden size.</summary>
    public int Dimensions => _model.Config.Dim;

    /// <inheritdoc/>
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (options?.Dimensions is { } d && d != Dimensions)
            throw new NotSupportedException($"this model's embeddings have {Dimensions} dimensions, not {d}");
        var texts = new List<string>(values);
        var result = new List<Embedding<float>>(texts.Count);
        long tokens = 0;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Task.Run(() =>
            {
                foreach (string text in texts)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var vector = Embed(text, out int n);
                    tokens += n;
                    result.Add(new Embedding<float>(vector) { ModelId = _metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow });
                }
            }, cancellationToken).ConfigureAwait(false);
        }
        finally { _gate.Release(); }
        return new GeneratedEmbeddings<Embedding<float>>(result) { Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens } };
    }

    /// <summary>One text's embedding (synchronous; callers hold the gate).</summary>
    private float[] Embed(string text, out int count)
    {
        int[] ids = _tokenizer.Encode(text, addBos: _tokenizer.Vocab.AddBos);
        if (ids.Length == 0) throw new ArgumentException("an empty text has no embedding (the model adds no BOS token)");
        if (ids.Length > _model.ContextSize)
            throw new EdgeLlmException($"the text is {ids.Length} tokens, more than the context of {_model.ContextSize} tokens");
        count = ids.Length;
        return _embedder.Embed(ids); // its own KV cache: the model's generation cache is left alone
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return _metadata;
        if (serviceType == typeof(LlamaModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_ownsModel) _model.Dispose();
        _gate.Dispose();
    }
}
