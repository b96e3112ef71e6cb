using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// An existing GGUF of an architecture EdgeLlm runs (llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gemma3), to re-quantize (e.g. F16 -> Q4_0). Tensors are dequantized row by row from the
/// mapping (any type EdgeLlm computes); a tensor whose chosen output type equals its stored type is copied
/// byte for byte (<see cref="GgufSourceTensor.RawType"/>). The output copies this file's metadata (see
/// <see cref="File"/>) and only rewrites file type, quantization version, name and checksums.
/// </summary>
public sealed class GgufSource : CheckpointSource
{
    public GgufFile File { get; }

    public override string Format => "GGUF";
    public override LlamaParams Params { get; }
    public override TokenizerData Tokenizer { get; }
    public override IReadOnlyList<SourceTensor> Tensors { get; }

    private GgufSource(GgufFile file, LlamaParams p, TokenizerData tok, List<SourceTensor> tensors)
    {
        File = file;
        Params = p;
        Tokenizer = tok;
        Tensors = tensors;
    }

    public static GgufSource Open(string path)
    {
        var f = GgufFile.Open(path);
        try
        {
            var c = LlamaConfig.FromGguf(f); // any architecture EdgeLlm runs; refuses the others in one line
            var p = new LlamaParams
            {
                Shape = c.Shape,
                Name = f.GetString(ModelKeys.Name) ?? System.IO.Path.GetFileNameWithoutExtension(path),
            };
            var tensors = new List<SourceTensor>();
            foreach (var info in f.Tensors)
            {
                if (!TypeTraits.IsComputable(info.Type))
                    throw new EdgeLlmException($"{path}: tensor '{info.Name}' is {GgmlTypes.Name(info.Type)}, which edgellm-convert cannot read");
                var shape = (long[])info.Dims.Clone();
                Array.Reverse(shape);
                tensors.Add(new GgufSourceTensor
                {
                    Name = info.Name,
                    Shape = shape,
                    DType = info.Type switch { GgmlType.F16 => SourceDType.F16, GgmlType.BF16 => SourceDType.BF16, _ => SourceDType.F32 },
                    View = f.GetTensor(info),
                });
            }
            return new GgufSource(f, p, TokenizerLoader.FromGguf(f), tensors);
        }
        catch
        {
            f.Dispose();
            throw;
        }
    }

    public override void Dispose() => File.Dispose();
}

/// <summary>A tensor of a GGUF file: rows of ggml row length ne0, dequantized on read.</summary>
internal sealed unsafe class GgufSourceTensor : SourceTensor
{
    internal required TensorView View { get; init; }

    /// <summary>The stored ggml type; a converter may copy <see cref="RawBytes"/> when it writes the same type.</summary>
    public GgmlType RawType => View.Type;

    internal byte* RawBytes => View.Data;
    internal long RawLength => View.ByteLength;

    public override void ReadRows(long row, int count, Span<float> dst)
    {
        SourceChecks.Rows(this, row, count, dst.Length);
        long ne0 = View.Ne0, start = row * RowLength, n = count * RowLength;
        fixed (float* d = dst)
        {
            if (GgmlTypes.BlockSize(View.Type) == 1)
            {
                // Scalar types: any element range is a valid "row" (1-D tensors are read in pieces this way).
                QuantRef.DequantizeRow(View.Type, View.Data + start * GgmlTypes.BlockBytes(View.Type), d, n);
                return;
            }
            if (start % ne0 != 0 || n % ne0 != 0)
                throw new ArgumentException($"{Name}: a {GgmlTypes.Name(View.Type)} tensor is read in whole rows of {ne0}");
            long rowBytes = View.RowBytes;
            for (long i = 0; i < n / ne0; i++)
                QuantRef.DequantizeRow(View.Type, View.Data + (start / ne0 + i) * rowBytes, d + i * ne0, ne0);
        }
    }
}
