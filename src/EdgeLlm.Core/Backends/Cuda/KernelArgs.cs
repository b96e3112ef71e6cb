namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// The parameters of one kernel, as a struct whose fields are named after the kernel's parameters and declared
/// in the same order. <see cref="Pointers"/> writes the address of each field, in that order, into the
/// <c>kernelParams</c> array of <c>cuLaunchKernel</c>. KernelArgsTests checks every struct against the
/// <c>.param</c> list of its kernels' PTX (count, order and type of each parameter).
/// </summary>
internal unsafe interface IKernelArgs<TSelf> where TSelf : unmanaged, IKernelArgs<TSelf>
{
    /// <summary>How many parameters the kernel takes.</summary>
    static abstract int Count { get; }

    /// <summary>Writes the address of each of <paramref name="args"/>'s fields to <paramref name="dst"/>[0..Count).</summary>
    static abstract void Pointers(TSelf* args, void** dst);
}

/// <summary>get_rows_&lt;type&gt;(table, rowBytes, ne0, ids, dst): one block per id.</summary>
internal unsafe struct GetRowsArgs : IKernelArgs<GetRowsArgs>
{
    public ulong Table;
    public long RowBytes;
    public int Ne0;
    public ulong Ids;
    public ulong Dst;

    public static int Count => 5;

    public static void Pointers(GetRowsArgs* a, void** p)
    {
        p[0] = &a->Table; p[1] = &a->RowBytes; p[2] = &a->Ne0; p[3] = &a->Ids; p[4] = &a->Dst;
    }
}

/// <summary>rmsnorm_f32(x, weight, dst, dim, eps): one block per row.</summary>
internal unsafe struct RmsNormArgs : IKernelArgs<RmsNormArgs>
{
    public ulong X;
    public ulong Weight;
    public ulong Dst;
    public int Dim;
    public float Eps;

    public static int Count => 5;

    public static void Pointers(RmsNormArgs* a, void** p)
    {
        p[0] = &a->X; p[1] = &a->Weight; p[2] = &a->Dst; p[3] = &a->Dim; p[4] = &a->Eps;
    }
}

/// <summary>quantize_q8(x, qx, dx, sx, blocks): activations to int8 per 32 values, one warp per block of 32.</summary>
internal unsafe struct QuantizeArgs : IKernelArgs<QuantizeArgs>
{
    public ulong X;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public long Blocks;

    public static int Count => 5;

    public static void Pointers(QuantizeArgs* a, void** p)
    {
        p[0] = &a->X; p[1] = &a->Qx; p[2] = &a->Dx; p[3] = &a->Sx; p[4] = &a->Blocks;
    }
}

/// <summary>matvec_&lt;quantized type&gt;_t1/_t8(w, rowBytes, k, rows, qx, dx, sx, dst, tokens): products with 8-bit activations.</summary>
internal unsafe struct MatVecQ8Args : IKernelArgs<MatVecQ8Args>
{
    public ulong Weight;
    public long RowBytes;
    public int K;
    public int Rows;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public ulong Dst;
    public int Tokens;

    public static int Count => 9;

    public static void Pointers(MatVecQ8Args* a, void** p)
    {
        p[0] = &a->Weight; p[1] = &a->RowBytes; p[2] = &a->K; p[3] = &a->Rows; p[4] = &a->Qx;
        p[5] = &a->Dx; p[6] = &a->Sx; p[7] = &a->Dst; p[8] = &a->Tokens;
    }
}

/// <summary>
/// matvec_packed_&lt;type&gt;_t1/_t8(w, rowBytes, k, rows, qx, dx, sx, dst, tokens, wpr, residual, counter, normW,
/// normDst, nqx, ndx, nsx, eps): products over rows in
/// <see cref="CudaRepack"/>'s layout, <c>wpr</c> warps per row.
/// </summary>
internal unsafe struct MatVecPackedArgs : IKernelArgs<MatVecPackedArgs>
{
    public ulong Weight;
    public long RowBytes;
    public int K;
    public int Rows;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public ulong Dst;
    public int Tokens;
    public int WarpsPerRow;

    /// <summary>1: the residual-add epilogue, dst += W x (the Wo and ffn_down products of a fused decode step); 2: also
    /// the norm epilogue (<see cref="Epilogue"/>).</summary>
    public int Residual;
    public NormEpilogueArgs Epilogue;

    public static int Count => 18;

    public static void Pointers(MatVecPackedArgs* a, void** p)
    {
        p[0] = &a->Weight; p[1] = &a->RowBytes; p[2] = &a->K; p[3] = &a->Rows; p[4] = &a->Qx;
        p[5] = &a->Dx; p[6] = &a->Sx; p[7] = &a->Dst; p[8] = &a->Tokens; p[9] = &a->WarpsPerRow; p[10] = &a->Residual;
        NormEpilogueArgs.Pointers(&a->Epilogue, p + 11);
    }
}

/// <summary>
/// The norm epilogue's run of kernel parameters (counter, normW, normDst, nqx, ndx, nsx, eps), the same in
/// matvec_packed_&lt;type&gt;_t1 and matmul.cu's matvec_&lt;type&gt;_res: the block counted last on <see cref="Counter"/>
/// writes the RMSNorm of the product's output with <see cref="Weight"/> into <see cref="Dst"/> and its q8 quantization
/// into Qx/Dx/Sx. A field of their argument structs (its fields are those kernels' parameters, in order).
/// </summary>
internal unsafe struct NormEpilogueArgs
{
    public ulong Counter;
    public ulong Weight;
    public ulong Dst;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public float Eps;

    public const int Count = 7;

    public static void Pointers(NormEpilogueArgs* a, void** p)
    {
        p[0] = &a->Counter; p[1] = &a->Weight; p[2] = &a->Dst; p[3] = &a->Qx; p[4] = &a->Dx; p[5] = &a->Sx; p[6] = &a->Eps;
    }
}

/// <summary>matvec_&lt;f32|f16|bf16&gt;_t1/_t8(w, rowBytes, k, rows, x, dst, tokens): products with float activations.</summary>
internal unsafe struct MatVecFloatArgs : IKernelArgs<MatVecFloatArgs>
{
    public ulong Weight;
    public long RowBytes;
    public int K;
    public int Rows;
    public ulong X;
    public ulong Dst;
    public int Tokens;

    public static int Count => 7;

    public static void Pointers(MatVecFloatArgs* a, void** p)
    {
        p[0] = &a->Weight; p[1] = &a->RowBytes; p[2] = &a->K; p[3] = &a->Rows; p[4] = &a->X; p[5] = &a->Dst; p[6] = &a->Tokens;
    }
}

/// <summary>rope_f32(x, step, posDelta, tokens, heads, headDim, half, invFreq, scale, neox, attnFactor).</summary>
internal unsafe struct RopeArgs : IKernelArgs<RopeArgs>
{
    public ulong X;
    public ulong Step;
    public int PosDelta;
    public int Tokens;
    public int Heads;
    public int HeadDim;
    public int Half;
    public ulong InvFreq;
    public float Scale;
    public int Neox;
    public float AttnFactor;

    public static int Count => 11;

    public static void Pointers(RopeArgs* a, void** p)
    {
        p[0] = &a->X; p[1] = &a->Step; p[2] = &a->PosDelta; p[3] = &a->Tokens; p[4] = &a->Heads; p[5] = &a->HeadDim;
        p[6] = &a->Half; p[7] = &a->InvFreq; p[8] = &a->Scale; p[9] = &a->Neox; p[10] = &a->AttnFactor;
    }
}

/// <summary>store_kv_f16(k, v, kCache, vCache, step, posDelta, tokens, kvDim).</summary>
internal unsafe struct StoreKvArgs : IKernelArgs<StoreKvArgs>
{
    public ulong K;
    public ulong V;
    public ulong KCache;
    public ulong VCache;
    public ulong Step;
    public int PosDelta;
    public int Tokens;
    public int KvDim;

    public static int Count => 8;

    public static void Pointers(StoreKvArgs* a, void** p)
    {
        p[0] = &a->K; p[1] = &a->V; p[2] = &a->KCache; p[3] = &a->VCache; p[4] = &a->Step; p[5] = &a->PosDelta;
        p[6] = &a->Tokens; p[7] = &a->KvDim;
    }
}

/// <summary>attention_f16(q, kCache, vCache, dst, step, posDelta, heads, headDim, kvDim, group, scale, softcap, window).</summary>
internal unsafe struct AttentionArgs : IKernelArgs<AttentionArgs>
{
    public ulong Q;
    public ulong KCache;
    public ulong VCache;
    public ulong Dst;
    public ulong Step;
    public int PosDelta;
    public int Heads;
    public int HeadDim;
    public int KvDim;
    public int Group;
    public float Scale;
    public float Softcap;
    public int Window;

    public static int Count => 13;

    public static void Pointers(AttentionArgs* a, void** p)
    {
        p[0] = &a->Q; p[1] = &a->KCache; p[2] = &a->VCache; p[3] = &a->Dst; p[4] = &a->Step; p[5] = &a->PosDelta;
        p[6] = &a->Heads; p[7] = &a->HeadDim; p[8] = &a->KvDim; p[9] = &a->Group; p[10] = &a->Scale; p[11] = &a->Softcap;
        p[12] = &a->Window;
    }
}

/// <summary>attention_prefill_f16 / _f32(q, kc, vc, dst, step, posDelta, tokens, heads, headDim, kvDim, group, scale, softcap, window).</summary>
internal unsafe struct AttentionPrefillArgs : IKernelArgs<AttentionPrefillArgs>
{
    public ulong Q;
    public ulong KCache;
    public ulong VCache;
    public ulong Dst;
    public ulong Step;
    public int PosDelta;
    public int Tokens;
    public int Heads;
    public int HeadDim;
    public int KvDim;
    public int Group;
    public float Scale;
    public float Softcap;
    public int Window;

    public static int Count => 14;

    public static void Pointers(AttentionPrefillArgs* a, void** p)
    {
        p[0] = &a->Q; p[1] = &a->KCache; p[2] = &a->VCache; p[3] = &a->Dst; p[4] = &a->Step; p[5] = &a->PosDelta;
        p[6] = &a->Tokens; p[7] = &a->Heads; p[8] = &a->HeadDim; p[9] = &a->KvDim; p[10] = &a->Group; p[11] = &a->Scale;
        p[12] = &a->Softcap; p[13] = &a->Window;
    }
}

/// <summary>swiglu_f32 / geglu_f32 / add_f32(x, y, count): x[i] = f(x[i], y[i]).</summary>
internal unsafe struct BinaryArgs : IKernelArgs<BinaryArgs>
{
    public ulong X;
    public ulong Y;
    public long Elements;

    public static int Count => 3;

    public static void Pointers(BinaryArgs* a, void** p)
    {
        p[0] = &a->X; p[1] = &a->Y; p[2] = &a->Elements;
    }
}

/// <summary>add_bias_f32(x, bias, width, count).</summary>
internal unsafe struct AddBiasArgs : IKernelArgs<AddBiasArgs>
{
    public ulong X;
    public ulong Bias;
    public int Width;
    public long Elements;

    public static int Count => 4;

    public static void Pointers(AddBiasArgs* a, void** p)
    {
        p[0] = &a->X; p[1] = &a->Bias; p[2] = &a->Width; p[3] = &a->Elements;
    }
}

/// <summary>scale_f32 / softcap_f32(x, value, count): x[i] = f(x[i], value).</summary>
internal unsafe struct ScalarArgs : IKernelArgs<ScalarArgs>
{
    public ulong X;
    public float Value;
    public long Elements;

    public static int Count => 3;

    public static void Pointers(ScalarArgs* a, void** p)
    {
        p[0] = &a->X; p[1] = &a->Value; p[2] = &a->Elements;
    }
}

/// <summary>argmax_f32(logits, n, out, feed).</summary>
internal unsafe struct ArgMaxArgs : IKernelArgs<ArgMaxArgs>
{
    public ulong Logits;
    public int N;
    public ulong Out;
    public ulong Feed;

    public static int Count => 4;

    public static void Pointers(ArgMaxArgs* a, void** p)
    {
        p[0] = &a->Logits; p[1] = &a->N; p[2] = &a->Out; p[3] = &a->Feed;
    }
}

/// <summary>attention_split_f16(q, kCache, vCache, part, step, posDelta, heads, headDim, kvDim, group, scale, softcap, window, chunkSize, chunks).</summary>
internal unsafe struct AttentionSplitArgs : IKernelArgs<AttentionSplitArgs>
{
    public ulong Q;
    public ulong KCache;
    public ulong VCache;
    public ulong Part;
    public ulong Step;
    public int PosDelta;
    public int Heads;
    public int HeadDim;
    public int KvDim;
    public int Group;
    public float Scale;
    public float Softcap;
    public int Window;
    public int ChunkSize;
    public int Chunks;

    public static int Count => 15;

    public static void Pointers(AttentionSplitArgs* a, void** p)
    {
        p[0] = &a->Q; p[1] = &a->KCache; p[2] = &a->VCache; p[3] = &a->Part; p[4] = &a->Step; p[5] = &a->PosDelta;
        p[6] = &a->Heads; p[7] = &a->HeadDim; p[8] = &a->KvDim; p[9] = &a->Group; p[10] = &a->Scale; p[11] = &a->Softcap;
        p[12] = &a->Window; p[13] = &a->ChunkSize; p[14] = &a->Chunks;
    }
}

/// <summary>attention_combine_f32(part, dst, step, posDelta, heads, headDim, window, chunkSize, chunks).</summary>
internal unsafe struct AttentionCombineArgs : IKernelArgs<AttentionCombineArgs>
{
    public ulong Part;
    public ulong Dst;
    public ulong Step;
    public int PosDelta;
    public int Heads;
    public int HeadDim;
    public int Window;
    public int ChunkSize;
    public int Chunks;

    public static int Count => 9;

    public static void Pointers(AttentionCombineArgs* a, void** p)
    {
        p[0] = &a->Part; p[1] = &a->Dst; p[2] = &a->Step; p[3] = &a->PosDelta; p[4] = &a->Heads; p[5] = &a->HeadDim;
        p[6] = &a->Window; p[7] = &a->ChunkSize; p[8] = &a->Chunks;
    }
}

/// <summary>
/// sample_f32(logits, n, state, repeatPenalty, presencePenalty, frequencyPenalty, temperature, invTemp,
/// topK, topP, minP, logMinP, work, padded, out, feed): one block. The per-token values (uniform, penalty pairs) are in
/// the state block (<see cref="CudaSampleState"/>), so the arguments are the same every step.
/// </summary>
internal unsafe struct SampleArgs : IKernelArgs<SampleArgs>
{
    public ulong Logits;
    public int N;
    public ulong State;
    public float RepeatPenalty;
    public float PresencePenalty;
    public float FrequencyPenalty;
    public float Temperature;
    public float InvTemp;
    public int TopK;
    public float TopP;
    public float MinP;
    public float LogMinP;
    public ulong Work;
    public int Padded;
    public ulong Out;
    public ulong Feed;

    public static int Count => 16;

    public static void Pointers(SampleArgs* a, void** p)
    {
        p[0] = &a->Logits; p[1] = &a->N; p[2] = &a->State; p[3] = &a->RepeatPenalty;
        p[4] = &a->PresencePenalty; p[5] = &a->FrequencyPenalty; p[6] = &a->Temperature; p[7] = &a->InvTemp; p[8] = &a->TopK;
        p[9] = &a->TopP; p[10] = &a->MinP; p[11] = &a->LogMinP; p[12] = &a->Work; p[13] = &a->Padded;
        p[14] = &a->Out; p[15] = &a->Feed;
    }
}
