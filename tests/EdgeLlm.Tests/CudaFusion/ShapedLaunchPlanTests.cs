using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;

namespace EdgeLlm.Tests.CudaFusion;

/// <summary>
/// The launches of a decode step of real model shapes (Llama-2 7B: dim 4096, 32 heads, MHA, ffn 11008; the 70B
/// layout: dim 8192, 64 heads over 8 kv heads, ffn 28672), cut to two layers and a 512-token vocab (a layer's launches
/// do not depend on either), from the real forward against <see cref="PlanRecordingBackend"/>. The GGUF is written with
/// ModelGen's tensor plan and metadata but all-zero tensor data, stored as holes of a sparse file (nothing here reads
/// a weight), so the 7B and 70B layers cost no disk.
/// </summary>
public class ShapedLaunchPlanTests
{
    private static (CudaOp[] Ops, Dictionary<BackendWeight, string> Names) DecodeStep(string preset, WeightFormat format, bool fuse, out int layers)
    {
        var shape = ModelShape.Preset(preset)! with { Layers = 2, Vocab = 512 };
        layers = shape.Layers;
        var options = new ModelGenOptions { Shape = shape, Format = format };
        string dir = Path.Combine(Path.GetTempPath(), "edgellm-shaped-plan");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, $"{preset}-{format.Type}-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        try
        {
            var w = new GgufWriter();
            foreach (var (key, value) in ModelGenerator.Metadata(options)) w.Set(key, value);
            foreach (var (key, value) in VocabSource.For(shape.Vocab, null).Keys) w.Set(key, value);
            foreach (var t in ModelGenerator.Plan(options)) w.AddTensor(t.Name, t.Type, t.Dims, s => WriteZeros(s, t.Bytes));
            using (var file = new HoleStream(path)) w.Write(file);
            var backend = new PlanRecordingBackend(stacking: fuse);
            using (var m = new LlamaModel(GgufFile.Open(path), backend, new BackendOptions { ContextSize = 4096 }, ownsFile: true))
            {
                var logits = new float[m.VocabSize];
                m.Forward([1, 2, 3], 0, logits);
                m.Forward(4, 3, logits);
            }
            return (backend.Steps[^1], backend.Names);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static readonly byte[] Zeros = new byte[1 << 20];

    private static void WriteZeros(Stream s, long bytes)
    {
        for (long done = 0; done < bytes; done += Zeros.Length) s.Write(Zeros, 0, (int)Math.Min(Zeros.Length, bytes - done));
    }

    /// <summary>A file stream that turns writes of all-zero bytes into seeks (holes) and sets the length at the end.</summary>
    private sealed class HoleStream(string path) : Stream
    {
        private readonly FileStream _f = new(path, FileMode.CreateNew, FileAccess.Write);

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (buffer.IndexOfAnyExcept((byte)0) < 0) _f.Seek(buffer.Length, SeekOrigin.Current);
            else _f.Write(buffer);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _f.SetLength(_f.Position);
                _f.Dispose();
            }
            base.Dispose(disposing);
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => _f.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private static List<CudaLaunch> Plan(CudaOp[] ops, bool fuse)
    {
        var plan = new List<CudaLaunch>();
        CudaLaunchPlanner.Plan(ops, plan, fuse);
        return plan;
    }

    /// <summary>
    /// Fused, a layer is 5 launches (from its Q/K/V product to the next layer's) and the step 5 L + 5: the embedding
    /// lookup, the first layer's attention norm, the layers, the copy of the last row, the output norm, the output
    /// product. Unfused (EDGELLM_CUDA_FUSE=0) 21 per layer and 21 L + 5.
    /// </summary>
    [Theory]
    [InlineData("7b")]   // MHA: 32 kv heads, each its own attention_flash_f16 group
    [InlineData("70b")]  // GQA: 8 kv heads of 8 query heads
    public void ALlamaLayerOfQ4_0Launches5KernelsFusedAnd21Unfused(string preset)
    {
        var (ops, names) = DecodeStep(preset, WeightFormat.Q4_0, fuse: true, out int layers);
        var plan = Plan(ops, fuse: true);
        string[] layer =
        [
            "matvec_packed_q4_0_qkv", "attention_flash_f16", "matvec_packed_q4_0_t1", "matvec_packed_q4_0_glu", "matvec_packed_q4_0_t1",
        ];
        Assert.Equal(layer, CudaLaunchPlanTests.LayerKernels(ops, plan, names, 0));
        var all = plan.SelectMany(l => CudaLaunchPlanner.KernelNames(l, ops)).ToArray();
        Assert.Equal(5 * layers + 5, all.Length);
        // the output norm (before the Q6_K output product llama.cpp's rule gives a Q4_0 file) and its product
        Assert.Equal(["get_rows_packed_q4_0", "add_rmsnorm_q8_f32"], all[..2]);
        Assert.Equal([CudaProfile.CopyName, "add_rmsnorm_q8_f32", "matvec_packed_q6_k_t1"], all[^3..]);

        var (plainOps, plainNames) = DecodeStep(preset, WeightFormat.Q4_0, fuse: false, out _);
        var plain = Plan(plainOps, fuse: false);
        Assert.Equal(21, CudaLaunchPlanTests.LayerKernels(plainOps, plain, plainNames, 0).Length);
        Assert.Equal(21 * layers + 5, plain.Sum(l => CudaLaunchPlanner.KernelNames(l, plainOps).Length));
    }
}
