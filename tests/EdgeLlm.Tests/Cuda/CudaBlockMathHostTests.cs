using System.Diagnostics;
using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// The block arithmetic of kernels/matmul.cu (dot_block&lt;type&gt;) and kernels/get_rows.cu (get_rows_&lt;type&gt;),
/// compiled from the kernel files themselves by a host C++ compiler (HostEmulation/host_shim.h stands in for the
/// inline PTX; HostEmulation/harness.cpp drives them) and run on the CPU, so the weight layouts are checked
/// without a GPU:
/// <list type="bullet">
/// <item>against llama.cpp: tests/data/models-visible/llama-TYPE.gguf is llama.gguf (F16 weights) requantized
/// by llama-quantize; the kernel's dequantization of every matrix must be within that type's quantization noise
/// of the F16 original (a misread layout gives errors of the order of the weights themselves);</item>
/// <item>the integer dot of each block with 8-bit activations equals the dequantized block times the same
/// activations, in double, on real and on random blocks (every bit pattern of the scale and high-bit fields);</item>
/// <item>the whole product kernels (quantize_q8 and matvec_&lt;type&gt;_t1/_t8, warps emulated by OS threads) sum
/// those block dots, NT=1 and NT=8 bit-identically.</item>
/// </list>
/// What only a GPU checks: the inline-PTX versions of dp4a and the fp16 conversion, the hardware prmt/vsub4, and
/// the device's scheduling (CudaAgreementTests, CudaOpAgreementTests).
/// </summary>
public class CudaBlockMathHostTests
{
    private static readonly string HostEmulationDir = Path.Combine(TestPaths.RepoRoot, "tests", "EdgeLlm.Tests", "Cuda", "HostEmulation");

    /// <summary>
    /// Relative RMS error bound of the dequantized matrices against the F16 originals, per type: about 1.5 times
    /// the quantization noise of that bit depth on these uniform random weights, which halves with every bit
    /// as a uniform grid's error does (these files give 2-bit 0.23, 3-bit 0.125, 4-bit 0.06, 5-bit 0.03, 6-bit
    /// 0.013). A wrong nibble, high bit, scale or min in even one sub-block of eight adds ~0.5.
    /// </summary>
    public static TheoryData<GgmlType, double> LlamaCppFiles() => new()
    {
        { GgmlType.Q4_1, 0.09 }, { GgmlType.Q5_0, 0.045 }, { GgmlType.Q5_1, 0.045 }, { GgmlType.IQ4_NL, 0.09 },
        { GgmlType.Q5_K, 0.045 }, { GgmlType.IQ4_XS, 0.09 }, { GgmlType.Q3_K, 0.19 }, { GgmlType.Q2_K, 0.35 },
        { GgmlType.Q4_K, 0.09 }, { GgmlType.Q6_K, 0.02 },
    };

    public static TheoryData<GgmlType> IntegerDotTypes()
    {
        var data = new TheoryData<GgmlType>();
        foreach (var t in CudaKernels.WeightTypes) if (CudaKernels.IsIntegerDot(t)) data.Add(t);
        return data;
    }

    [HostCompilerTheory]
    [MemberData(nameof(LlamaCppFiles))]
    public void KernelDequantizationOfLlamaCppQuantsMatchesTheF16Original(GgmlType type, double bound)
    {
        string name = GgmlTypes.Name(type);
        using var quant = GgufFile.Open(TestPaths.Data(Path.Combine("models-visible", $"llama-{name}.gguf")));
        using var f16 = GgufFile.Open(TestPaths.Data(Path.Combine("models-visible", "llama.gguf")));
        var rng = new Random(3);
        int matrices = 0;
        foreach (var info in quant.Tensors)
        {
            var q = quant.GetTensor(info);
            if (q.Type != type || q.Dims.Length != 2) continue;
            var o = f16.GetTensor(info.Name) ?? throw new InvalidDataException($"llama.gguf has no {info.Name}");
            Assert.Equal(GgmlType.F16, o.Type);
            Assert.Equal(q.Dims, o.Dims);
            var x = RandomActivations(rng, (int)q.Ne0);
            var r = Harness.Run(type, (int)q.Ne0, (int)q.Rows, q.Span, x);

            double num = 0, den = 0;
            var orig = MemoryMarshal.Cast<byte, Half>(o.Span);
            for (int i = 0; i < r.Dequantized.Length; i++)
            {
                double w = (double)orig[i], d = r.Dequantized[i] - w;
                num += d * d;
                den += w * w;
            }
            double rel = Math.Sqrt(num / den);
            Assert.True(rel <= bound, $"{name} {info.Name}: the kernel's dequantization is {rel:F4} (relative RMS) from the F16 weights, bound {bound}");
            CheckDots(name + " " + info.Name, r, (int)q.Ne0, (int)q.Rows);
            matrices++;
        }
        Assert.True(matrices >= 7, $"llama-{name}.gguf: only {matrices} {name} matrices (llama-quantize --pure writes every matrix in the type)");
    }

    /// <summary>Random bytes in every field but the fp16 scales (kept finite and moderate).</summary>
    [HostCompilerTheory]
    [MemberData(nameof(IntegerDotTypes))]
    public void BlockDotsEqualTheDequantizedBlocksOnRandomBits(GgmlType type)
    {
        var (blockElems, blockBytes) = GgmlTypes.Geometry(type);
        const int k = 1024, rows = 16;
        var rng = new Random((int)type);
        var bytes = new byte[rows * (k / blockElems) * blockBytes];
        rng.NextBytes(bytes);
        for (int b = 0; b < bytes.Length / blockBytes; b++)
            foreach (int at in HalfFields(type))
            {
                Half h = (Half)((rng.NextDouble() * 0.05 + 0.001) * (rng.Next(2) == 0 ? -1 : 1));
                BitConverter.TryWriteBytes(bytes.AsSpan(b * blockBytes + at, 2), BitConverter.HalfToUInt16Bits(h));
            }
        var x = RandomActivations(rng, k);
        var r = Harness.Run(type, k, rows, bytes, x);
        Assert.All(r.Dequantized, v => Assert.True(float.IsFinite(v)));
        CheckDots(GgmlTypes.Name(type), r, k, rows);
    }

    /// <summary>
    /// The product kernels themselves (quantize_q8, then matvec_&lt;type&gt;_t1 and _t8 with their warp loops and
    /// shuffles, as CudaBackend launches them) on 11 tokens: NT=1 and NT=8 give bit-identical outputs (the decode
    /// and prefill paths agree), and each output is the sum of its row's block dots. Real llama.cpp blocks where
    /// models-visible has the type, random bits otherwise.
    /// </summary>
    [HostCompilerTheory]
    [MemberData(nameof(IntegerDotTypes))]
    public void MatVecKernelsSumTheBlockDotsAndAgreeBetweenNt1AndNt8(GgmlType type)
    {
        const int tokens = 11, rows = 12;
        var (k, bytes) = SomeRows(type, rows);
        var rng = new Random(9);
        var x = RandomActivations(rng, tokens * k);
        var t1 = Harness.MatVec(type, k, rows, tokens, 1, bytes, x);
        var t8 = Harness.MatVec(type, k, rows, tokens, 8, bytes, x);
        Assert.Equal(t1, t8);
        int nb = k / 32;
        for (int t = 0; t < tokens; t++)
        {
            var r = Harness.Run(type, k, rows, bytes, x.AsSpan(t * k, k).ToArray());
            for (int row = 0; row < rows; row++)
            {
                double want = 0, scale = 0;
                for (int b = 0; b < nb; b++)
                {
                    want += r.Dots[row * nb + b];
                    scale += Math.Abs(r.Dots[row * nb + b]);
                }
                float got = t1[t * rows + row];
                Assert.True(Math.Abs(got - want) <= 1e-5 * scale + 1e-30, $"{type} token {t} row {row}: matvec {got}, sum of block dots {want}");
            }
        }
    }

    /// <summary>The first rows of a matrix of <paramref name="type"/> from llama-TYPE.gguf, or random bits (k = 512).</summary>
    private static (int K, byte[] Bytes) SomeRows(GgmlType type, int rows)
    {
        string path = TestPaths.Data(Path.Combine("models-visible", $"llama-{GgmlTypes.Name(type)}.gguf"));
        if (File.Exists(path))
        {
            using var f = GgufFile.Open(path);
            foreach (var info in f.Tensors)
            {
                var t = f.GetTensor(info);
                if (t.Type != type || t.Dims.Length != 2 || t.Rows < rows) continue;
                return ((int)t.Ne0, t.Span[..(int)(t.RowBytes * rows)].ToArray());
            }
        }
        var (blockElems, blockBytes) = GgmlTypes.Geometry(type);
        const int k = 512;
        var rng = new Random((int)type + 100);
        var bytes = new byte[rows * (k / blockElems) * blockBytes];
        rng.NextBytes(bytes);
        for (int b = 0; b < bytes.Length / blockBytes; b++)
            foreach (int at in HalfFields(type))
                BitConverter.TryWriteBytes(bytes.AsSpan(b * blockBytes + at, 2), BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 0.05 + 0.001)));
        return (k, bytes);
    }

    /// <summary>IQ4 level lookups: the prmt-based four-at-a-time lookup against ggml's table, for every index.</summary>
    [HostCompilerFact]
    public void Iq4NlBlocksDecodeToGgmlsLevels()
    {
        sbyte[] levels = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]; // ggml kvalues_iq4nl
        // One IQ4_NL block with d = 1: byte j holds indices j (low) and 15 - j (high).
        var block = new byte[18];
        BitConverter.TryWriteBytes(block.AsSpan(0, 2), BitConverter.HalfToUInt16Bits((Half)1));
        for (int j = 0; j < 16; j++) block[2 + j] = (byte)(j | ((15 - j) << 4));
        var x = new float[32];
        x[5] = 1f; // a one-hot activation: the dot is weight 5 * dx * 127
        var r = Harness.Run(GgmlType.IQ4_NL, 32, 1, block, x);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(levels[j], r.Dequantized[j]);
            Assert.Equal(levels[15 - j], r.Dequantized[16 + j]);
        }
        Assert.Equal(levels[5] * 127 * r.Dx[0], r.Dots[0]);
        for (int e = 0; e < 32; e++)
        {
            Array.Clear(x);
            x[e] = -2f;
            var one = Harness.Run(GgmlType.IQ4_NL, 32, 1, block, x);
            Assert.Equal(r.Dequantized[e] * -127 * one.Dx[0], one.Dots[0]);
        }
    }

    /// <summary>Every block's dot against the dequantized block times the same quantized activations (double).</summary>
    private static void CheckDots(string what, HarnessResult r, int k, int rows)
    {
        int nb = k / 32;
        for (int row = 0; row < rows; row++)
            for (int b = 0; b < nb; b++)
            {
                double want = 0, scale = 0;
                for (int i = 0; i < 32; i++)
                {
                    double p = (double)r.Dequantized[(long)row * k + b * 32 + i] * r.Xq[b * 32 + i] * r.Dx[b];
                    want += p;
                    scale += Math.Abs(p);
                }
                float got = r.Dots[row * nb + b];
                // float scales and products: a few float ulps of the magnitudes involved
                Assert.True(Math.Abs(got - want) <= 1e-5 * scale + 1e-30,
                    $"{what} row {row} block {b}: dot_block gives {got}, the dequantized block gives {want} (sum of |products| {scale})");
            }
    }

    private static float[] RandomActivations(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 97 == 0 ? 8f : 1f);
        return x;
    }

    /// <summary>Byte offsets of the fp16 fields (scales, mins) in a block of <paramref name="t"/> (ggml layouts).</summary>
    private static int[] HalfFields(GgmlType t) => t switch
    {
        GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q5_0 or GgmlType.IQ4_NL or GgmlType.IQ4_XS => [0],
        GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
        GgmlType.Q6_K => [208],
        GgmlType.Q3_K => [108],
        GgmlType.Q2_K => [80, 82],
        _ => throw new ArgumentException(t.ToString()),
    };

    internal sealed record HarnessResult(float[] Dequantized, float[] Dx, sbyte[] Xq, float[] Dots);

    /// <summary>harness.cpp built once per test run with the host C++ compiler.</summary>
    internal static class Harness
    {
        private static readonly Lazy<string> Binary = new(Build);

        public static string? Compiler { get; } = FindCompiler();

        private static string? FindCompiler()
        {
            foreach (string c in new[] { "g++", "clang++", "c++" })
                foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
                    if (File.Exists(Path.Combine(dir, c))) return Path.Combine(dir, c);
            return null;
        }

        private static string Build()
        {
            Assert.True(Compiler is not null, "no host C++ compiler (g++, clang++ or c++) on PATH");
            string output = TestPaths.TempFile("cuda-host-harness");
            var psi = new ProcessStartInfo(Compiler!)
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            foreach (string a in new[]
                     {
                         "-std=c++14", "-O1", "-pthread", "-ffp-contract=off", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-function",
                         "-I", Path.Combine(TestPaths.RepoRoot, "kernels"),
                         "-include", Path.Combine(HostEmulationDir, "host_shim.h"),
                         Path.Combine(HostEmulationDir, "harness.cpp"), "-o", output,
                     })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"{Compiler} failed on harness.cpp:\n{err}");
            return output;
        }

        public static HarnessResult Run(GgmlType type, int k, int rows, ReadOnlySpan<byte> weights, float[] x)
        {
            string name = CudaKernels.Suffix(type)!;
            var input = new MemoryStream();
            input.Write(System.Text.Encoding.ASCII.GetBytes(name));
            input.WriteByte(0);
            input.Write(BitConverter.GetBytes(k));
            input.Write(BitConverter.GetBytes(rows));
            input.Write(BitConverter.GetBytes(GgmlTypes.RowBytes(type, k)));
            Assert.Equal(GgmlTypes.RowBytes(type, k) * rows, weights.Length);
            input.Write(weights);
            input.Write(MemoryMarshal.AsBytes(x.AsSpan()));

            var bytes = Exec(input, name);
            int nb = k / 32;
            long expect = (long)rows * k * 4 + nb * 36L + (long)rows * nb * 4;
            Assert.Equal(expect, bytes.Length);
            var deq = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(0, rows * k * 4)).ToArray();
            var dx = new float[nb];
            var xq = new sbyte[k];
            int at = rows * k * 4;
            for (int b = 0; b < nb; b++, at += 36)
            {
                dx[b] = BitConverter.ToSingle(bytes, at);
                for (int i = 0; i < 32; i++) xq[b * 32 + i] = (sbyte)bytes[at + 4 + i];
            }
            var dots = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(at, rows * nb * 4)).ToArray();
            return new HarnessResult(deq, dx, xq, dots);
        }

        public static float[] MatVec(GgmlType type, int k, int rows, int tokens, int nt, byte[] weights, float[] x)
        {
            var input = new MemoryStream();
            input.Write("matvec\0"u8);
            input.Write(System.Text.Encoding.ASCII.GetBytes(CudaKernels.Suffix(type)!));
            input.WriteByte(0);
            foreach (int v in new[] { k, rows, tokens, nt }) input.Write(BitConverter.GetBytes(v));
            input.Write(BitConverter.GetBytes(GgmlTypes.RowBytes(type, k)));
            input.Write(weights);
            input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
            var bytes = Exec(input, $"matvec {type} NT={nt}");
            Assert.Equal(tokens * rows * 4, bytes.Length);
            return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
        }

        /// <summary>Runs the harness on <paramref name="input"/> (which starts with the type or op name) and returns its output.</summary>
        public static byte[] Exec(MemoryStream input, string what)
        {
            var psi = new ProcessStartInfo(Binary.Value)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var feed = Task.Run(() =>
            {
                p.StandardInput.BaseStream.Write(input.GetBuffer(), 0, (int)input.Length);
                p.StandardInput.Close();
            });
            var output = new MemoryStream();
            p.StandardOutput.BaseStream.CopyTo(output);
            feed.Wait();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"harness {what}: exit {p.ExitCode}: {stderr.Result}");
            return output.ToArray();
        }
    }
}

/// <summary>A fact that needs a host C++ compiler: skipped without one, unless CI requires the CUDA tools.</summary>
public sealed class HostCompilerFactAttribute : FactAttribute
{
    public HostCompilerFactAttribute()
    {
        if (CudaBlockMathHostTests.Harness.Compiler is null && !CudaTestEnvironment.ToolsRequired)
            Skip = "no host C++ compiler (g++, clang++ or c++) on PATH";
    }
}

/// <summary>A theory that needs a host C++ compiler (see <see cref="HostCompilerFactAttribute"/>).</summary>
public sealed class HostCompilerTheoryAttribute : TheoryAttribute
{
    public HostCompilerTheoryAttribute()
    {
        if (CudaBlockMathHostTests.Harness.Compiler is null && !CudaTestEnvironment.ToolsRequired)
            Skip = "no host C++ compiler (g++, clang++ or c++) on PATH";
    }
}
