using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Kernels;

namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// A grouped product (<see cref="CpuBackend.MatMulGroup"/>) whose repacked members have row counts that are not a
/// multiple of the eight-row group: the rows after the last whole group run the stored-row kernels, and each member's
/// static share and claimed chunks end mid-member. The mutation pass found that the grouped tests missed dropping those
/// rows (every member there has a multiple of 8 rows; only the batched kernel tests' 101 rows caught it). Every output
/// row, tail rows included, against a float64 product of the dequantized weights and the unquantized input.
/// </summary>
public sealed unsafe class GroupedTailRowsTests
{
    private const int N = 256;

    public static TheoryData<int, int> Cases()
    {
        var d = new TheoryData<int, int>();
        foreach (int tokens in new[] { 1, 3, 4, 5, 13 })
            foreach (int threads in new[] { 1, 2, 3 })
                d.Add(tokens, threads);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Tail_rows_of_repacked_members_are_computed(int tokens, int threads)
    {
        (GgmlType Type, int Rows)[] members = [(GgmlType.Q4_0, 45), (GgmlType.Q8_0, 37), (GgmlType.Q4_0, 13)];
        int count = members.Length;
        var weights = new byte[count][];
        var deq = new float[count][];
        for (int m = 0; m < count; m++)
        {
            var (t, rows) = members[m];
            long rowBytes = GgmlTypes.RowBytes(t, N);
            weights[m] = GC.AllocateUninitializedArray<byte>((int)(rowBytes * rows), pinned: true);
            deq[m] = new float[rows * N];
            for (int r = 0; r < rows; r++)
            {
                float[] f = K256TestData.Gaussian(N, 53 * m + r + 7, 0.05);
                byte[] q = QuantRef.QuantizeRow(t, f);
                q.CopyTo(weights[m], r * rowBytes);
                QuantRef.DequantizeRow(t, q, deq[m].AsSpan(r * N, N));
            }
        }
        float[] x = new float[tokens * N];
        for (int k = 0; k < tokens; k++)
        {
            float[] a = K256TestData.Gaussian(N, 400 + k);
            for (int i = 0; i < N; i++) x[k * N + i] = (1 + k) * a[i];
        }

        var handles = weights.Select(w => GCHandle.Alloc(w, GCHandleType.Pinned)).ToArray();
        try
        {
            using var backend = new CpuBackend(threads, false) { GroupMatMuls = true };
            backend.Prepare(new BackendLimits(tokens, N, 4, 2, 2));
            var ws = new BackendWeight[count];
            var ds = new BackendBuffer[count];
            for (int m = 0; m < count; m++)
            {
                var (t, rows) = members[m];
                ws[m] = backend.LoadWeight(new TensorView($"w{m}", t, [N, rows], (byte*)handles[m].AddrOfPinnedObject(), weights[m].Length));
                ds[m] = backend.Allocate((long)tokens * rows);
                backend.CopyIn(new float[tokens * rows].Select(_ => float.NaN).ToArray(), ds[m], 0); // a row never written stays NaN
            }
            var bx = backend.Allocate((long)tokens * N);
            backend.CopyIn(x, bx, 0);
            backend.MatMulGroup(ws, bx, ds, tokens);
            for (int m = 0; m < count; m++)
            {
                int rows = members[m].Rows;
                var got = new float[tokens * rows];
                backend.CopyOut(ds[m], 0, got);
                for (int k = 0; k < tokens; k++)
                    for (int r = 0; r < rows; r++)
                    {
                        double want = 0, mag = 0;
                        for (int i = 0; i < N; i++)
                        {
                            double p = (double)deq[m][r * N + i] * x[k * N + i];
                            want += p;
                            mag += Math.Abs(p);
                        }
                        double g = got[k * rows + r];
                        Assert.True(Math.Abs(g - want) <= 2e-2 * mag,
                            $"{tokens} tokens, {threads} threads: member {m} ({members[m].Type}, {rows} rows) token {k} row {r}: {g} vs float64 {want:G6}");
                    }
            }
        }
        finally
        {
            foreach (var h in handles) h.Free();
        }
    }
}
