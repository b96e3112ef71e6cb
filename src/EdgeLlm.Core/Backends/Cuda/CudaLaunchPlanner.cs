namespace EdgeLlm.Backends.Cuda;

/// <summary>What one entry of a launch plan launches (kernels/fused.cu's kernels from <see cref="AddRmsNormQ8"/> on).</summary>
internal enum LaunchKind : byte
{
    GetRows, RmsNorm, Quantize, MatVec, Rope, StoreKv, Attention, AttentionSplit, SwiGlu, GeGlu, Add, AddBias, Scale, Softcap, Copy,

    /// <summary>add_rmsnorm_q8_f32: [the residual add at <see cref="CudaLaunch.Aux"/> +] the norm at <see cref="CudaLaunch.Op"/> [+ the next product's quantization].</summary>
    AddRmsNormQ8,

    /// <summary>rope_store_qkv_f32: the split of the stacked product at Op, its bias adds (Op+1..Aux-3: Qwen2), both ropes and the kv store (Aux-2..Aux).</summary>
    RopeStoreQkv,

    /// <summary>glu_split_q8_f32: the split of the stacked gate/up product at Op and the glu at Op+1 [+ the down projection's quantization].</summary>
    GluSplitQ8,

    /// <summary>split_rows_f32: the split of the stacked product at Op alone.</summary>
    SplitRows,

    /// <summary>attention_flash_f16: split attention and its combine in one launch [+ the Wo product's quantization].</summary>
    AttentionFlash,

    /// <summary>matvec_packed_&lt;type&gt;_t1 with the residual epilogue: the product at Op written as x += W a into the x of the add at Aux.</summary>
    MatVecResidual,

    /// <summary>
    /// matvec_packed_&lt;type&gt;_t1 with the residual and the norm epilogue: as <see cref="MatVecResidual"/>, and the block that
    /// finishes last writes the RMSNorm at Aux + 1 of the updated x and its quantization for the product after it.
    /// </summary>
    MatVecResidualNorm,

    /// <summary>argmax_f32 / sample_f32: the token pick at the end of a decode step (kernels/sample.cu).</summary>
    ArgMax, Sample,
    /// <summary>
    /// matvec_packed_&lt;type&gt;_qkv: the stacked Q/K/V product at Op (one token, packed integer weights) with the bias +
    /// rope + kv store epilogue: the bias adds at Op+1..Aux-3, the ropes at Aux-2, Aux-1 and the store at Aux,
    /// <see cref="RopeStoreQkv"/>'s work.
    /// </summary>
    MatVecRopeStore,

    /// <summary>
    /// matvec_packed_&lt;type&gt;_glu: the stacked gate/up product at Op (one token, packed integer weights) with the glu at
    /// Aux [+ the down projection's quantization] as its epilogue, <see cref="GluSplitQ8"/>'s work.
    /// </summary>
    MatVecGlu,
}

/// <summary>One launch of a plan: its kind, the recorded op it is for, a second op it absorbs (-1: none), and whether it also quantizes the activations of the product that follows.</summary>
internal readonly record struct CudaLaunch(LaunchKind Kind, int Op, int Aux = -1, bool Quantize = false);

/// <summary>
/// Turns a recorded step (<see cref="CudaOp"/>s, as the forward issued them) into the launches that run it. Without
/// fusion each op is its own launch, plus a <c>quantize_q8</c> before an integer product whose input is not already
/// quantized (Q, K and V share one). With fusion (the default; EDGELLM_CUDA_FUSE=0 turns it off) a short sequence of
/// ops becomes one kernel of kernels/fused.cu whose results are bit for bit those of the sequence:
/// <list type="bullet">
/// <item>residual add + RMSNorm [+ the next product's quantization] (add_rmsnorm_q8_f32; also a lone norm before an integer product);</item>
/// <item>a stacked Q/K/V product's split [+ its Q/K/V bias adds] + rope(q) + rope(k) + kv store (rope_store_qkv_f32);</item>
/// <item>a stacked gate/up product's split + SwiGLU/GeGLU [+ the down projection's quantization] (glu_split_q8_f32);</item>
/// <item>split attention + its combine [+ the Wo product's quantization] in one launch (attention_flash_f16: the last
/// block of each kv head combines);</item>
/// <item>a decode product over packed integer weights followed by the residual add of its output (x += W a: Wo and
/// ffn_down) as the product's epilogue, when the next op overwrites the product's own output buffer (the next norm,
/// or the copy of the last row), so nothing reads it; the norm after it then has no add to absorb;</item>
/// <item>and when that norm feeds an integer product, the norm and its quantization as well, written by the
/// product's last block to finish (matvec_packed's norm epilogue): the Wo and ffn_down products then end the attention
/// and the ffn half of a layer in one launch each.</item>
/// </list>
/// A pure function of the ops, so the launch count of a step is testable without a GPU (CudaLaunchPlanTests).
/// </summary>
internal static class CudaLaunchPlanner
{
    /// <summary>Replaces <paramref name="plan"/>'s contents with the launches of <paramref name="ops"/> (no allocation once the list has grown).</summary>
    public static void Plan(ReadOnlySpan<CudaOp> ops, List<CudaLaunch> plan, bool fuse)
    {
        plan.Clear();
        CudaBuffer? qx = null; // whose activations the quantized scratch holds, for how many tokens and which row length
        int qxTokens = 0;
        long qxK = 0;
        for (int i = 0; i < ops.Length; i++)
        {
            ref readonly var op = ref ops[i];
            switch (op.Kind)
            {
                case CudaOpKind.MatMul:
                    Product(in op, i);
                    if (fuse && IsResidualProduct(ops, i))
                    {
                        // matvec_packed's norm epilogue always quantizes; matmul.cu's _res kernels may leave it out
                        if (IsNormEpilogue(ops, i, out bool quantize) && (quantize || !op.Weight!.Packed))
                        {
                            ref readonly var norm = ref ops[i + 2];
                            plan[^1] = new CudaLaunch(LaunchKind.MatVecResidualNorm, i, i + 1, quantize);
                            if (quantize) Quantized(norm.Dst!, norm.Tokens, norm.Dim);
                            else qx = null;
                            i += 2;
                            continue;
                        }
                        plan[^1] = new CudaLaunch(LaunchKind.MatVecResidual, i, i + 1);
                        i += 1;
                        if (ReferenceEquals(ops[i].X, qx)) qx = null;
                    }
                    if (ReferenceEquals(op.Dst, qx)) qx = null;
                    continue;
                case CudaOpKind.MatMulStacked:
                    Product(in op, i);
                    if (fuse && IsRopeStore(ops, i, BiasOps(ops, i)))
                    {
                        int store = i + BiasOps(ops, i) + 3; // the kv store; the ropes before it, the biases before them
                        if (IsEpilogueProduct(in op)) plan[^1] = new CudaLaunch(LaunchKind.MatVecRopeStore, i, store);
                        else plan.Add(new CudaLaunch(LaunchKind.RopeStoreQkv, i, store));
                        i = store;
                    }
                    else if (fuse && IsGlu(ops, i))
                    {
                        bool quantize = ConsumesQ8(ops, i + 2, op.Dst!, op.Tokens, op.Part0);
                        if (IsEpilogueProduct(in op) && op.Part0 % 32 == 0) plan[^1] = new CudaLaunch(LaunchKind.MatVecGlu, i, i + 1, quantize);
                        else plan.Add(new CudaLaunch(LaunchKind.GluSplitQ8, i, i + 1, quantize));
                        i += 1;
                        if (quantize) { Quantized(op.Dst!, op.Tokens, op.Part0); continue; }
                    }
                    else plan.Add(new CudaLaunch(LaunchKind.SplitRows, i));
                    break;
                case CudaOpKind.Add when fuse && i + 1 < ops.Length && IsNormAfterAdd(in op, in ops[i + 1]):
                    if (Norm(ops, i + 1, add: i)) { i += 1; continue; }
                    i += 1;
                    break;
                case CudaOpKind.AttentionSplit when fuse:
                {
                    bool quantize = op.HeadDim % 32 == 0 && ConsumesQ8(ops, i + 1, op.Dst!, op.Tokens, (long)op.Heads * op.HeadDim);
                    plan.Add(new CudaLaunch(LaunchKind.AttentionFlash, i, Quantize: quantize));
                    if (quantize) { Quantized(op.Dst!, op.Tokens, (long)op.Heads * op.HeadDim); continue; }
                    break;
                }
                case CudaOpKind.RmsNorm:
                    if (!fuse) plan.Add(new CudaLaunch(LaunchKind.RmsNorm, i));
                    else if (Norm(ops, i, add: -1)) continue;
                    break;
                default:
                    plan.Add(new CudaLaunch(Simple(op.Kind), i));
                    break;
            }
            qx = null; // every other launch may have written the quantized activations' source
        }

        void Product(in CudaOp op, int i)
        {
            long k = op.Weight!.Ne0;
            if (CudaKernels.IsIntegerDot(op.Weight.Type) && !(ReferenceEquals(qx, op.X) && qxTokens == op.Tokens && qxK == k))
            {
                plan.Add(new CudaLaunch(LaunchKind.Quantize, i));
                Quantized(op.X!, op.Tokens, k);
            }
            plan.Add(new CudaLaunch(LaunchKind.MatVec, i));
        }

        // The norm at n (after the add at `add`, or -1): fused when it absorbs the add or the next product's
        // quantization; true when the quantized activations are then the norm's output.
        bool Norm(ReadOnlySpan<CudaOp> ops, int n, int add)
        {
            ref readonly var norm = ref ops[n];
            bool quantize = ConsumesQ8(ops, n + 1, norm.Dst!, norm.Tokens, norm.Dim);
            if (add < 0 && !quantize)
            {
                plan.Add(new CudaLaunch(LaunchKind.RmsNorm, n));
                return false;
            }
            plan.Add(new CudaLaunch(LaunchKind.AddRmsNormQ8, n, add, quantize));
            if (quantize) Quantized(norm.Dst!, norm.Tokens, norm.Dim);
            return quantize;
        }

        void Quantized(CudaBuffer x, int tokens, long k)
        {
            qx = x;
            qxTokens = tokens;
            qxK = k;
        }
    }

    /// <summary>
    /// The kernel names a plan entry launches, as the profile (EDGELLM_CUDA_PROFILE=1) names them: two for unfused split
    /// attention. A product is named by the matrix-vector kernel it launches (matvec_packed_* for weights repacked at
    /// upload); a prefill batch of a type with a GEMM kernel runs gemm.cu's instead when the device has one.
    /// </summary>
    public static string[] KernelNames(in CudaLaunch l, ReadOnlySpan<CudaOp> ops)
    {
        ref readonly var op = ref ops[l.Op];
        return l.Kind switch
        {
            LaunchKind.GetRows => [$"get_rows_{(op.Weight!.Packed ? "packed_" : "")}{CudaKernels.Suffix(op.Weight.Type)}"],
            LaunchKind.RmsNorm => ["rmsnorm_f32"],
            LaunchKind.Quantize => ["quantize_q8"],
            LaunchKind.MatVec => [MatVecName(in op)],
            LaunchKind.MatVecResidual or LaunchKind.MatVecResidualNorm =>
                [op.Weight!.Packed ? MatVecName(in op) : $"matvec_{CudaKernels.Suffix(op.Weight.Type)}_res"],
            LaunchKind.Rope => ["rope_f32"],
            LaunchKind.StoreKv => ["store_kv_f16"],
            LaunchKind.Attention => ["attention_f16"],
            LaunchKind.AttentionSplit => ["attention_split_f16", "attention_combine_f32"],
            LaunchKind.SwiGlu => ["swiglu_f32"],
            LaunchKind.GeGlu => ["geglu_f32"],
            LaunchKind.Add => ["add_f32"],
            LaunchKind.AddBias => ["add_bias_f32"],
            LaunchKind.Scale => ["scale_f32"],
            LaunchKind.Softcap => ["softcap_f32"],
            LaunchKind.Copy => [CudaProfile.CopyName],
            LaunchKind.AddRmsNormQ8 => ["add_rmsnorm_q8_f32"],
            LaunchKind.RopeStoreQkv => ["rope_store_qkv_f32"],
            LaunchKind.GluSplitQ8 => ["glu_split_q8_f32"],
            LaunchKind.SplitRows => ["split_rows_f32"],
            LaunchKind.AttentionFlash => ["attention_flash_f16"],
            LaunchKind.ArgMax => ["argmax_f32"],
            LaunchKind.Sample => ["sample_f32"],
            LaunchKind.MatVecRopeStore => [$"matvec_packed_{CudaKernels.Suffix(op.Weight!.Type)}_qkv"],
            LaunchKind.MatVecGlu => [$"matvec_packed_{CudaKernels.Suffix(op.Weight!.Type)}_glu"],
            _ => throw new ArgumentOutOfRangeException(nameof(l), $"unknown launch kind {l.Kind}"),
        };
    }

    private static string MatVecName(in CudaOp op)
    {
        var w = op.Weight!;
        string packed = w.Packed && CudaKernels.IsIntegerDot(w.Type) ? "packed_" : "";
        return $"matvec_{packed}{CudaKernels.Suffix(w.Type)}_{(op.Tokens == 1 ? "t1" : "t8")}";
    }

    private static LaunchKind Simple(CudaOpKind k) => k switch
    {
        CudaOpKind.GetRows => LaunchKind.GetRows,
        CudaOpKind.Rope => LaunchKind.Rope,
        CudaOpKind.StoreKv => LaunchKind.StoreKv,
        CudaOpKind.Attention => LaunchKind.Attention,
        CudaOpKind.AttentionSplit => LaunchKind.AttentionSplit,
        CudaOpKind.SwiGlu => LaunchKind.SwiGlu,
        CudaOpKind.GeGlu => LaunchKind.GeGlu,
        CudaOpKind.Add => LaunchKind.Add,
        CudaOpKind.AddBias => LaunchKind.AddBias,
        CudaOpKind.Scale => LaunchKind.Scale,
        CudaOpKind.Softcap => LaunchKind.Softcap,
        CudaOpKind.Copy => LaunchKind.Copy,
        CudaOpKind.ArgMax => LaunchKind.ArgMax,
        CudaOpKind.Sample => LaunchKind.Sample,
        _ => throw new ArgumentOutOfRangeException(nameof(k), $"{k} is not a one-launch op"),
    };

    /// <summary>
    /// The product at <paramref name="i"/> is a one-token product (matvec_packed over weights repacked at upload, or
    /// matmul.cu's matvec_&lt;type&gt;_res over weights as stored: both have the residual epilogue; one token never runs
    /// the GEMM), the op after it adds exactly its
    /// output y into another buffer x, and the op after that overwrites all of y before anything reads it (a norm
    /// into y, or a copy into y), so the epilogue's x += W a leaves every buffer that is read later as the sequence does.
    /// </summary>
    private static bool IsResidualProduct(ReadOnlySpan<CudaOp> ops, int i)
    {
        if (i + 2 >= ops.Length) return false;
        ref readonly var mm = ref ops[i];
        ref readonly var add = ref ops[i + 1];
        ref readonly var next = ref ops[i + 2];
        var y = mm.Dst;
        if (mm.Tokens != 1) return false;
        if (add.Kind != CudaOpKind.Add || !ReferenceEquals(add.Y, y) || ReferenceEquals(add.X, y) || ReferenceEquals(add.X, mm.X)
            || add.Count != mm.Weight!.Rows) return false;
        return next.Kind switch
        {
            CudaOpKind.RmsNorm => ReferenceEquals(next.Dst, y) && !ReferenceEquals(next.X, y) && (long)next.Tokens * next.Dim >= add.Count,
            CudaOpKind.Copy => ReferenceEquals(next.Dst, y) && !ReferenceEquals(next.X, y) && next.DstOffset == 0 && next.Count >= add.Count,
            _ => false,
        };
    }

    /// <summary>
    /// After the residual product at <paramref name="i"/> and its add, a norm of exactly the updated x (one token, a
    /// multiple of 32 floats) into the product's own output buffer: the product's last block can write the norm, and
    /// (<paramref name="quantize"/>) its quantization when the next op reads it as an integer product.
    /// </summary>
    private static bool IsNormEpilogue(ReadOnlySpan<CudaOp> ops, int i, out bool quantize)
    {
        ref readonly var add = ref ops[i + 1];
        ref readonly var norm = ref ops[i + 2];
        quantize = false;
        if (!(norm.Kind == CudaOpKind.RmsNorm && ReferenceEquals(norm.X, add.X) && norm.Tokens == 1 && norm.Dim == add.Count && norm.Dim % 32 == 0)) return false;
        quantize = ConsumesQ8(ops, i + 3, norm.Dst!, 1, norm.Dim);
        return true;
    }

    /// <summary>
    /// A stacked product that can take the epilogue of matvec_packed_*_qkv or _glu: one token (those kernels have no
    /// token loop; prefill runs the GEMM) over weights repacked at upload with an integer dot.
    /// </summary>
    private static bool IsEpilogueProduct(in CudaOp op) => op.Tokens == 1 && op.Weight!.Packed && CudaKernels.IsIntegerDot(op.Weight.Type);

    /// <summary>x += y, then the norm of x over exactly the elements the add wrote.</summary>
    private static bool IsNormAfterAdd(in CudaOp add, in CudaOp norm) =>
        norm.Kind == CudaOpKind.RmsNorm && ReferenceEquals(norm.X, add.X) && (long)norm.Tokens * norm.Dim == add.Count;

    /// <summary>Op <paramref name="j"/> is an integer product of <paramref name="x"/>'s rows of <paramref name="k"/> over <paramref name="tokens"/> tokens.</summary>
    private static bool ConsumesQ8(ReadOnlySpan<CudaOp> ops, int j, CudaBuffer x, int tokens, long k) =>
        j < ops.Length && ops[j].Kind is CudaOpKind.MatMul or CudaOpKind.MatMulStacked && ReferenceEquals(ops[j].X, x)
        && ops[j].Tokens == tokens && ops[j].Weight!.Ne0 == k && k % 32 == 0 && CudaKernels.IsIntegerDot(ops[j].Weight!.Type);

    /// <summary>
    /// How many bias adds follow the stacked product at <paramref name="i"/>, each adding a bias of exactly one part's
    /// width to all of that part (the Q, K and V biases of Qwen2), in part order, each part at most once.
    /// </summary>
    internal static int BiasOps(ReadOnlySpan<CudaOp> ops, int i)
    {
        ref readonly var s = ref ops[i];
        int n = 0, next = 0; // next: the first part a bias may still go to
        while (i + 1 + n < ops.Length && ops[i + 1 + n].Kind == CudaOpKind.AddBias)
        {
            ref readonly var b = ref ops[i + 1 + n];
            int part = ReferenceEquals(b.X, s.Dst) ? 0 : ReferenceEquals(b.X, s.Dst1) ? 1 : s.Dst2 is not null && ReferenceEquals(b.X, s.Dst2) ? 2 : -1;
            if (part < next) break;
            long width = part == 0 ? s.Part0 : part == 1 ? s.Part1 : s.Part2;
            if (b.Weight!.Ne0 != width || b.Count != (long)s.Tokens * width) break;
            next = part + 1;
            n++;
        }
        return n;
    }

    /// <summary>
    /// The stacked Q/K/V product at <paramref name="i"/>, <paramref name="biases"/> bias adds (<see cref="BiasOps"/>), then
    /// rope(q), rope(k) with one spec and the kv store of k and v, each over all the product's tokens and exactly its parts.
    /// </summary>
    private static bool IsRopeStore(ReadOnlySpan<CudaOp> ops, int i, int biases)
    {
        if (i + biases + 3 >= ops.Length) return false;
        ref readonly var s = ref ops[i];
        ref readonly var rq = ref ops[i + biases + 1];
        ref readonly var rk = ref ops[i + biases + 2];
        ref readonly var kv = ref ops[i + biases + 3];
        return s.Dst2 is not null && rq.Kind == CudaOpKind.Rope && rk.Kind == CudaOpKind.Rope && kv.Kind == CudaOpKind.StoreKv
            && ReferenceEquals(rq.X, s.Dst) && ReferenceEquals(rk.X, s.Dst1) && ReferenceEquals(kv.X, s.Dst1) && ReferenceEquals(kv.Y, s.Dst2)
            && ReferenceEquals(rq.Rope, rk.Rope) && rq.StartPos == rk.StartPos && rk.StartPos == kv.StartPos
            && rq.Tokens == s.Tokens && rk.Tokens == s.Tokens && kv.Tokens == s.Tokens
            && (long)rq.Heads * rq.Rope!.HeadDim == s.Part0 && (long)rk.Heads * rk.Rope!.HeadDim == s.Part1
            && kv.KvDim == s.Part1 && s.Part2 == s.Part1;
    }

    /// <summary>The stacked gate/up product at <paramref name="i"/> followed by the glu of its two parts over all its tokens.</summary>
    private static bool IsGlu(ReadOnlySpan<CudaOp> ops, int i)
    {
        if (i + 1 >= ops.Length) return false;
        ref readonly var s = ref ops[i];
        ref readonly var g = ref ops[i + 1];
        return s.Dst2 is null && g.Kind is CudaOpKind.SwiGlu or CudaOpKind.GeGlu && ReferenceEquals(g.X, s.Dst) && ReferenceEquals(g.Y, s.Dst1)
            && s.Part0 == s.Part1 && g.Count == (long)s.Tokens * s.Part0;
    }
}
