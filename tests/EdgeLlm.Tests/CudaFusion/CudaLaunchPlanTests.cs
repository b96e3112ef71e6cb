using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.CudaFusion;

/// <summary>
/// The kernels a CUDA decode step launches per layer, without a GPU: the forward runs against
/// <see cref="PlanRecordingBackend"/> (which records what CudaBackend records) and <see cref="CudaLaunchPlanner"/>
/// turns the recorded decode step into its launches, fused (the default, with Q/K/V and gate/up stacked) or not
/// (EDGELLM_CUDA_FUSE=0). A layer's launches run from its Q/K/V product (with the quantization before it) to the next
/// layer's: the attention norm is a launch of its own in the first layer only when the previous layer's ffn_down
/// product writes it (the norm epilogue).
/// </summary>
public class CudaLaunchPlanTests
{
    private static string ModelPath(string name) => TestPaths.Data(Path.Combine("models-visible", name + ".gguf"));

    /// <summary>The decode step (one token after a three-token prompt) as recorded, and the weight names.</summary>
    private static (CudaOp[] Step, PlanRecordingBackend Backend) DecodeStep(string model, bool stacking)
    {
        var backend = new PlanRecordingBackend(stacking);
        using var m = new LlamaModel(GgufFile.Open(ModelPath(model)), backend, new BackendOptions { ContextSize = 256 }, ownsFile: true);
        var logits = new float[m.VocabSize];
        m.Forward([1, 2, 3], 0, logits);
        m.Forward(4, 3, logits);
        var step = backend.Steps[^1];
        Assert.Equal(CudaOpKind.GetRows, step[0].Kind);
        Assert.Equal(1, step[0].Tokens);
        return (step, backend);
    }

    private static List<CudaLaunch> Plan(CudaOp[] ops, bool fuse)
    {
        var plan = new List<CudaLaunch>();
        CudaLaunchPlanner.Plan(ops, plan, fuse);
        return plan;
    }

    /// <summary>The kernel names of layer <paramref name="layer"/>'s launches in the decode step.</summary>
    private static string[] LayerKernels(string model, bool fuse, int layer)
    {
        var (ops, backend) = DecodeStep(model, stacking: fuse);
        var plan = Plan(ops, fuse);
        return LayerKernels(ops, plan, backend.Names, layer);
    }

    /// <summary>The kernel names of the launches from layer <paramref name="layer"/>'s Q (or stacked Q/K/V) product to the next layer's.</summary>
    internal static string[] LayerKernels(CudaOp[] ops, List<CudaLaunch> plan, Dictionary<BackendWeight, string> names, int layer)
    {
        int Start(int l) => plan.FindIndex(x => ops[x.Op].Kind is CudaOpKind.MatMul or CudaOpKind.MatMulStacked
            && names[ops[x.Op].Weight!].StartsWith($"blk.{l}.attn_q", StringComparison.Ordinal));
        int from = Start(layer), to = Start(layer + 1);
        Assert.True(from >= 0 && to > from, $"layer {layer}'s or layer {layer + 1}'s Q/K/V product was not found in the plan");
        return plan.Skip(from).Take(to - from).SelectMany(l => CudaLaunchPlanner.KernelNames(l, ops)).ToArray();
    }

    [Fact]
    public void ALlamaLayerOfQ4KWeightsLaunches5KernelsFusedAnd21Unfused()
    {
        string[] fused =
        [
            "matvec_packed_q4_k_qkv",                      // Q/K/V stacked; the block finishing a head: rope + kv store
            "attention_flash_f16",                         // split attention + combine + quantization of its output
            "matvec_packed_q4_k_t1",                       // Wo, adding into the residual; its last block: ffn norm + quantization
            "matvec_packed_q4_k_glu",                      // gate/up stacked; the block finishing a 32-block: SwiGLU + quantization
            "matvec_packed_q4_k_t1",                       // down, adding into the residual; its last block: next attention norm + quantization
        ];
        Assert.Equal(fused, LayerKernels("llama-Q4_K", fuse: true, layer: 0));
        string[] unfused =
        [
            "quantize_q8", "matvec_packed_q4_k_t1", "matvec_packed_q4_k_t1", "matvec_packed_q4_k_t1",
            "rope_f32", "rope_f32", "store_kv_f16", "attention_split_f16", "attention_combine_f32",
            "quantize_q8", "matvec_packed_q4_k_t1", "add_f32",
            "rmsnorm_f32", "quantize_q8", "matvec_packed_q4_k_t1", "matvec_packed_q4_k_t1", "swiglu_f32", "quantize_q8", "matvec_packed_q4_k_t1", "add_f32",
            "rmsnorm_f32",                                 // the next layer's attention norm
        ];
        Assert.Equal(unfused, LayerKernels("llama-Q4_K", fuse: false, layer: 0));
    }

    /// <summary>
    /// The Wo and ffn_down products of every layer write x += W a (MatVecResidual, absorbing the add after them), so
    /// no add is launched and no norm adds; the residual they add into is the add's x (the hidden state), and the op
    /// after the add overwrites the product's own output buffer. Weights read in place from the mapped file (an
    /// integrated GPU: not packed, not stacked) do the same through matmul.cu's matvec_&lt;type&gt;_res.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheWoAndDownProductsAddIntoTheResidual(bool packedWeights)
    {
        var backend = new PlanRecordingBackend(stacking: packedWeights, packing: packedWeights);
        using (var m = new LlamaModel(GgufFile.Open(ModelPath("llama-Q4_K")), backend, new BackendOptions { ContextSize = 256 }, ownsFile: true))
        {
            var logits = new float[m.VocabSize];
            m.Forward([1, 2, 3], 0, logits);
            m.Forward(4, 3, logits);
        }
        var ops = backend.Steps[^1];
        var plan = Plan(ops, fuse: true);
        var residual = plan.Where(l => l.Kind is LaunchKind.MatVecResidual or LaunchKind.MatVecResidualNorm).ToList();
        int layers = ops.Count(o => o.Kind == CudaOpKind.AttentionSplit);
        Assert.True(layers >= 2);
        Assert.Equal(2 * layers, residual.Count);
        for (int k = 0; k < residual.Count; k++)
        {
            var l = residual[k];
            string name = backend.Names[ops[l.Op].Weight!];
            Assert.True(name.EndsWith(TensorNames.AttnOutput, StringComparison.Ordinal) || name.EndsWith(TensorNames.FfnDown, StringComparison.Ordinal), name);
            Assert.Equal(packedWeights, ops[l.Op].Weight!.Packed);
            Assert.Equal(CudaOpKind.Add, ops[l.Aux].Kind);
            Assert.Same(ops[l.Op].Dst, ops[l.Aux].Y);
            Assert.Same(ops[l.Op].Dst, ops[l.Aux + 1].Dst); // overwritten next (a norm, or the copy of the last row)
            // the norm epilogue exactly where that norm feeds an integer product: all but the last layer's ffn_down,
            // which the copy of the last row follows
            bool last = k == residual.Count - 1;
            Assert.Equal(last ? LaunchKind.MatVecResidual : LaunchKind.MatVecResidualNorm, l.Kind);
            Assert.Equal(!last, l.Quantize);
            if (!last) Assert.Equal(CudaOpKind.RmsNorm, ops[l.Aux + 1].Kind);
            string kernel = CudaLaunchPlanner.KernelNames(l, ops).Single();
            Assert.Equal(packedWeights ? "matvec_packed_q4_k_t1" : "matvec_q4_k_res", kernel);
        }
        Assert.DoesNotContain(plan, l => l.Kind == LaunchKind.Add);
        Assert.DoesNotContain(plan, l => l.Kind == LaunchKind.AddRmsNormQ8 && l.Aux >= 0);
        // the norms left as launches: the first layer's attention norm and the output norm
        Assert.Equal(2, plan.Count(l => l.Kind is LaunchKind.AddRmsNormQ8 or LaunchKind.RmsNorm));
    }

    [Fact]
    public void FloatWeightProductsTakeTheResidualAndNormEpiloguesWithoutQuantization()
    {
        // llama.gguf is F16: the products read float activations, nothing is quantized.
        // The Wo and ffn_down products add into the residual and write the next norm (matvec_f16_res, no quantization).
        string[] fused =
        [
            "matvec_f16_t1", "rope_store_qkv_f32", "attention_flash_f16", "matvec_f16_res",
            "matvec_f16_t1", "glu_split_q8_f32", "matvec_f16_res",
        ];
        Assert.Equal(fused, LayerKernels("llama", fuse: true, layer: 0));
    }

    [Theory]
    [InlineData("qwen2", 7, 20)]    // q/k/v biases between the product and rope: added by the split + rope + store launch
    [InlineData("gemma", 7, 17)]    // GeGLU, head dim 80, float weights
    [InlineData("phi3", 7, 17)]     // Q/K/V and gate/up stored fused in the file: stacked again from their views
    [InlineData("llama-Q6_K", 5, 21)]
    [InlineData("llama-Q5_0", 5, 21)]
    [InlineData("llama-IQ4_XS", 5, 21)]
    public void EveryFamilyLaunchesFewerKernelsPerLayerFused(string model, int fused, int unfused)
    {
        Assert.Equal(fused, LayerKernels(model, fuse: true, layer: 0).Length);
        Assert.Equal(unfused, LayerKernels(model, fuse: false, layer: 0).Length);
    }

    private static readonly HashSet<string> Known = CudaKernels.EntryPoints.Values.SelectMany(v => v).ToHashSet();

    /// <summary>
    /// Every recorded op of every step (prefill and decode, every family) is run by exactly one launch: its own, or
    /// the fused launch that absorbed it; quantize_q8 launches come right before the product whose input they quantize.
    /// Mapped: the weights read in place from the registered file of an integrated GPU (Jetson): not packed, not
    /// stacked, so Q/K/V (with Qwen2's biases) and gate/up are separate products.
    /// </summary>
    [Theory]
    [InlineData("llama-Q4_K", false)]
    [InlineData("llama", false)]
    [InlineData("qwen2", false)]
    [InlineData("gemma", false)]
    [InlineData("gemma2", false)]
    [InlineData("phi3", false)]
    [InlineData("llama-Q4_K", true)]
    [InlineData("llama", true)]
    [InlineData("qwen2", true)]
    [InlineData("gemma", true)]
    [InlineData("gemma2", true)]
    [InlineData("phi3", true)]
    public void EveryOpIsLaunchedExactlyOnce(string model, bool mapped)
    {
        foreach (bool fuse in new[] { true, false })
        {
            var backend = new PlanRecordingBackend(stacking: fuse && !mapped, packing: !mapped);
            using (var m = new LlamaModel(GgufFile.Open(ModelPath(model)), backend, new BackendOptions { ContextSize = 256 }, ownsFile: true))
            {
                var logits = new float[m.VocabSize];
                m.Forward([1, 2, 3, 4, 5], 0, logits);
                m.Forward(6, 5, logits);
            }
            Assert.True(backend.Steps.Count >= 2);
            foreach (var ops in backend.Steps)
            {
                var plan = Plan(ops, fuse);
                var runs = new int[ops.Length];
                for (int i = 0; i < plan.Count; i++)
                {
                    var l = plan[i];
                    switch (l.Kind)
                    {
                        case LaunchKind.Quantize:
                            // (on the mapped path a separate product's quantization also feeds matmul.cu's _res kernels)
                            Assert.Contains(plan[i + 1].Kind, new[]
                            {
                                LaunchKind.MatVec, LaunchKind.MatVecRopeStore, LaunchKind.MatVecGlu, LaunchKind.MatVecResidual, LaunchKind.MatVecResidualNorm,
                            });
                            Assert.Equal(l.Op, plan[i + 1].Op);
                            continue;
                        case LaunchKind.RopeStoreQkv:
                            Assert.Equal(l.Op + CudaLaunchPlanner.BiasOps(ops, l.Op) + 3, l.Aux); // [bias adds,] rope, rope, store
                            for (int j = l.Op + 1; j <= l.Aux; j++) runs[j]++;
                            continue; // the product itself ran as the MatVec before it
                        case LaunchKind.MatVecRopeStore:
                            Assert.Equal(l.Op + CudaLaunchPlanner.BiasOps(ops, l.Op) + 3, l.Aux);
                            for (int j = l.Op + 1; j <= l.Aux; j++) runs[j]++;
                            break;
                        case LaunchKind.MatVecGlu:
                            runs[l.Aux]++;
                            break;
                        case LaunchKind.GluSplitQ8 or LaunchKind.SplitRows:
                            if (l.Aux >= 0) runs[l.Aux]++;
                            continue;
                        case LaunchKind.AddRmsNormQ8 or LaunchKind.MatVecResidual:
                            if (l.Aux >= 0) runs[l.Aux]++;
                            break;
                        case LaunchKind.MatVecResidualNorm:
                            runs[l.Aux]++;
                            runs[l.Aux + 1]++;
                            break;
                    }
                    runs[l.Op]++;
                }
                for (int j = 0; j < ops.Length; j++) Assert.True(runs[j] == 1, $"{model} (fuse {fuse}): op {j} ({ops[j].Kind}) runs {runs[j]} times");
                // every launch names a kernel the backend compiles (an entry point of kernels/*.cu)
                foreach (var l in plan)
                    foreach (string name in CudaLaunchPlanner.KernelNames(l, ops))
                        Assert.True(name == CudaProfile.CopyName || Known.Contains(name), $"{model} (fuse {fuse}, mapped {mapped}): {l.Kind} launches {name}, no kernel of that name");
                if (!fuse) Assert.DoesNotContain(plan, l => l.Kind >= LaunchKind.AddRmsNormQ8);
            }
        }
    }
}
