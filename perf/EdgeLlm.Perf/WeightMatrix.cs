using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Perf;

/// <summary>
/// A quantized weight matrix in native memory (Rows × Cols, seeded Gaussian values) plus a float vector and an
/// output buffer, the working set shared by the benchmarks.
/// </summary>
public sealed unsafe class WeightMatrix : IDisposable
{
    public const int Rows = 64;
    public const int Cols = 4096;

    public GgmlType Type { get; }
    /// <summary>Rows of this matrix (<see cref="Rows"/> unless the constructor was given another count).</summary>
    public int RowCount { get; }
    public long RowBytes { get; }
    public byte* Weights { get; }
    public float* X { get; }
    public float* Y { get; }

    /// <summary>Bytes of quantized weights one pass over the matrix reads (what the GB/s column divides by).</summary>
    public static long WeightBytes(GgmlType type) => Rows * GgmlTypes.RowBytes(type, Cols);

    public WeightMatrix(GgmlType type) : this(type, Rows) { }

    /// <summary>A <paramref name="rows"/> × <see cref="Cols"/> matrix (e.g. 4096 × 4096 for the kernel benchmarks).</summary>
    public WeightMatrix(GgmlType type, int rows)
    {
        Type = type;
        RowCount = rows;
        RowBytes = GgmlTypes.RowBytes(type, Cols);
        Weights = (byte*)NativeMemory.AlignedAlloc((nuint)(RowBytes * rows), 64);
        X = (float*)NativeMemory.AlignedAlloc(Cols * sizeof(float), 64);
        Y = (float*)NativeMemory.AlignedAlloc(Cols * sizeof(float), 64);
        var rng = new Random(1234);
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < Cols; c++) Y[c] = Gaussian(rng) * 0.02f;
            QuantRef.QuantizeRow(type, Y, Weights + r * RowBytes, Cols);
        }
        for (int c = 0; c < Cols; c++) X[c] = Gaussian(rng);
    }

    private static float Gaussian(Random rng) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));

    public void Dispose()
    {
        NativeMemory.AlignedFree(Weights);
        NativeMemory.AlignedFree(X);
        NativeMemory.AlignedFree(Y);
    }
}
