using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Convert.Sources;

/// <summary>Element type of a tensor in a source checkpoint.</summary>
public enum SourceDType { F32, F16, BF16 }

/// <summary>
/// One tensor of a source checkpoint, already named and laid out the way llama.cpp expects (GGUF name, Meta
/// adjacent-pair RoPE row order: a source whose q/k rows are in rotate-half order undoes that in
/// <see cref="ReadRows"/>). <see cref="Shape"/> is in PyTorch order (Shape[0] = output rows); the GGUF dims are
/// its reverse. The tensor is read as a 2-D matrix [Shape[0], product of the rest], a few rows at a time, so
/// no reader ever needs to hold a whole tensor (or a whole shard) in memory.
/// </summary>
public abstract class SourceTensor
{
    public required string Name { get; init; }
    public required long[] Shape { get; init; }
    public required SourceDType DType { get; init; }

    public long Rows => Shape[0];

    public long RowLength
    {
        get { long n = 1; for (int i = 1; i < Shape.Length; i++) n *= Shape[i]; return n; }
    }

    /// <summary>GGUF dims (innermost first): the reverse of <see cref="Shape"/>.</summary>
    public long[] GgufDims
    {
        get { var d = (long[])Shape.Clone(); Array.Reverse(d); return d; }
    }

    /// <summary>Reads rows [row, row + count) as float32 into dst (count * RowLength floats). Thread-safe.</summary>
    public abstract void ReadRows(long row, int count, Span<float> dst);
}

/// <summary>
/// What the converter knows of a checkpoint, whatever format it came in: its shape (the engine's
/// <see cref="ModelShape"/>) and what the output file gets beyond it.
/// </summary>
public sealed record LlamaParams
{
    public required ModelShape Shape { get; init; }

    /// <summary>Llama-3.1 style rope scaling factors (written as rope_freqs), if the checkpoint asks for them.</summary>
    public float[]? RopeFreqFactors { get; init; }
    public string Name { get; init; } = "llama";

    /// <summary>
    /// The <c>{arch}.*</c> hyperparameter keys (without the prefix) in the order llama.cpp's converter writes them,
    /// for sources that know their architecture's full key set (Hugging Face); null: the llama key set.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>>? ArchMetadata { get; init; }

    /// <summary>Tensors the converter computes from the configuration (rope_factors_long/short), written as F32.</summary>
    public IReadOnlyList<KeyValuePair<string, float[]>>? GeneratedTensors { get; init; }
}

/// <summary>Tokenizer of a checkpoint, ready to be written as GGUF tokenizer.* metadata.</summary>
public sealed record TokenizerData
{
    /// <summary>"llama" (SentencePiece) or "gpt2" (byte-level BPE).</summary>
    public required string Model { get; init; }
    public required string[] Tokens { get; init; }
    public float[]? Scores { get; init; }
    public required int[] TokenTypes { get; init; }
    public string[]? Merges { get; init; }
    public string? Pre { get; init; }
    public int Bos { get; init; } = -1;
    public int Eos { get; init; } = -1;
    public int Unknown { get; init; } = -1;
    public int Padding { get; init; } = -1;
    public bool? AddBos { get; init; }
    public bool? AddEos { get; init; }
    public string? ChatTemplate { get; init; }
    /// <summary>SentencePiece add_dummy_prefix (written as tokenizer.ggml.add_space_prefix only when false); null if unknown.</summary>
    public bool? AddSpacePrefix { get; init; }
}

/// <summary>
/// An opened checkpoint: its hyperparameters, its tokenizer and its tensors (GGUF names, llama.cpp layout, in
/// the order they should be written). Implemented once per input format (HF safetensors, Meta .pth shards,
/// llama2c .bin, GGUF).
/// </summary>
public abstract class CheckpointSource : IDisposable
{
    public abstract string Format { get; }
    public abstract LlamaParams Params { get; }
    public abstract TokenizerData Tokenizer { get; }
    public abstract IReadOnlyList<SourceTensor> Tensors { get; }

    public virtual void Dispose() { }
}
