namespace EdgeLlm.Backends.Cuda;

// The parameters of kernels/fused.cu's entry points (see IKernelArgs and CudaLaunchPlanner).

/// <summary>add_rmsnorm_q8_f32(x, y, w, dst, qx, dx, sx, dim, eps, residual, quantize): one block per token row.</summary>
internal unsafe struct AddRmsNormQ8Args : IKernelArgs<AddRmsNormQ8Args>
{
    public ulong X;
    public ulong Y;
    public ulong Weight;
    public ulong Dst;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public int Dim;
    public float Eps;
    public int Residual;
    public int Quantize;

    public static int Count => 11;

    public static void Pointers(AddRmsNormQ8Args* a, void** p)
    {
        p[0] = &a->X; p[1] = &a->Y; p[2] = &a->Weight; p[3] = &a->Dst; p[4] = &a->Qx; p[5] = &a->Dx; p[6] = &a->Sx;
        p[7] = &a->Dim; p[8] = &a->Eps; p[9] = &a->Residual; p[10] = &a->Quantize;
    }
}

/// <summary>rope_store_qkv_f32(qkv, q, k, v, kc, vc, step, posDelta, nTokens, qDim, kvDim, headDim, half, invFreq, scale, neox, attnFactor, bq, bk, bv).</summary>
internal unsafe struct RopeStoreQkvArgs : IKernelArgs<RopeStoreQkvArgs>
{
    public ulong Qkv;
    public ulong Q;
    public ulong K;
    public ulong V;
    public ulong KCache;
    public ulong VCache;
    public ulong Step;
    public int PosDelta;
    public int Tokens;
    public int QDim;
    public int KvDim;
    public int HeadDim;
    public int Half;
    public ulong InvFreq;
    public float Scale;
    public int Neox;
    public float AttnFactor;
    /// <summary>The Q, K and V biases (0: none).</summary>
    public ulong Bq;
    public ulong Bk;
    public ulong Bv;

    public static int Count => 20;

    public static void Pointers(RopeStoreQkvArgs* a, void** p)
    {
        p[0] = &a->Qkv; p[1] = &a->Q; p[2] = &a->K; p[3] = &a->V; p[4] = &a->KCache; p[5] = &a->VCache; p[6] = &a->Step;
        p[7] = &a->PosDelta; p[8] = &a->Tokens; p[9] = &a->QDim; p[10] = &a->KvDim; p[11] = &a->HeadDim; p[12] = &a->Half;
        p[13] = &a->InvFreq; p[14] = &a->Scale; p[15] = &a->Neox; p[16] = &a->AttnFactor; p[17] = &a->Bq; p[18] = &a->Bk; p[19] = &a->Bv;
    }
}

/// <summary>glu_split_q8_f32(gu, gate, up, qx, dx, sx, ffn, nTokens, geglu, quantize): one thread per gate element.</summary>
internal unsafe struct GluSplitArgs : IKernelArgs<GluSplitArgs>
{
    public ulong GateUp;
    public ulong Gate;
    public ulong Up;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public int Ffn;
    public int Tokens;
    public int Geglu;
    public int Quantize;

    public static int Count => 10;

    public static void Pointers(GluSplitArgs* a, void** p)
    {
        p[0] = &a->GateUp; p[1] = &a->Gate; p[2] = &a->Up; p[3] = &a->Qx; p[4] = &a->Dx; p[5] = &a->Sx;
        p[6] = &a->Ffn; p[7] = &a->Tokens; p[8] = &a->Geglu; p[9] = &a->Quantize;
    }
}

/// <summary>split_rows_f32(src, d0, d1, d2, w0, w1, w2, nTokens): one thread per element of the stacked rows.</summary>
internal unsafe struct SplitRowsArgs : IKernelArgs<SplitRowsArgs>
{
    public ulong Src;
    public ulong D0;
    public ulong D1;
    public ulong D2;
    public int W0;
    public int W1;
    public int W2;
    public int Tokens;

    public static int Count => 8;

    public static void Pointers(SplitRowsArgs* a, void** p)
    {
        p[0] = &a->Src; p[1] = &a->D0; p[2] = &a->D1; p[3] = &a->D2; p[4] = &a->W0; p[5] = &a->W1; p[6] = &a->W2; p[7] = &a->Tokens;
    }
}

/// <summary>
/// attention_flash_f16(q, kc, vc, part, dst, qx, dx, sx, counters, step, posDelta, nHeads, headDim, kvDim, group, scale,
/// softcap, window, chunkSize, chunks, quantize): split attention, its combine by the last block of each kv head, and
/// [quantize] the output's int8 quantization, in one launch over (kv heads, chunks).
/// </summary>
internal unsafe struct AttentionFlashArgs : IKernelArgs<AttentionFlashArgs>
{
    public ulong Q;
    public ulong KCache;
    public ulong VCache;
    public ulong Part;
    public ulong Dst;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public ulong Counters;
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
    public int Quantize;

    public static int Count => 21;

    public static void Pointers(AttentionFlashArgs* a, void** p)
    {
        p[0] = &a->Q; p[1] = &a->KCache; p[2] = &a->VCache; p[3] = &a->Part; p[4] = &a->Dst; p[5] = &a->Qx; p[6] = &a->Dx;
        p[7] = &a->Sx; p[8] = &a->Counters; p[9] = &a->Step; p[10] = &a->PosDelta; p[11] = &a->Heads; p[12] = &a->HeadDim;
        p[13] = &a->KvDim; p[14] = &a->Group; p[15] = &a->Scale; p[16] = &a->Softcap; p[17] = &a->Window; p[18] = &a->ChunkSize;
        p[19] = &a->Chunks; p[20] = &a->Quantize;
    }
}

/// <summary>
/// matvec_packed_&lt;type&gt;_qkv(w, rowBytes, k, rows, qx, dx, sx, dst, wpr, counters, q, k, v, kc, vc, step, posDelta, qDim,
/// kvDim, headDim, half, invFreq, scale, neox, attnFactor, bq, bk, bv): the stacked Q/K/V product of one token into dst,
/// and the block that finishes a head (its rows counted on counters[head], zero between launches) adds the part's
/// bias, rotates it into q or k and stores k and v in the fp16 cache (rope_store_qkv_f32's work).
/// </summary>
internal unsafe struct MatVecPackedQkvArgs : IKernelArgs<MatVecPackedQkvArgs>
{
    public ulong Weight;
    public long RowBytes;
    public int K;
    public int Rows;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public ulong Dst;
    public int WarpsPerRow;
    public ulong Counters;
    public ulong Q;
    public ulong KOut;
    public ulong V;
    public ulong KCache;
    public ulong VCache;
    public ulong Step;
    public int PosDelta;
    public int QDim;
    public int KvDim;
    public int HeadDim;
    public int Half;
    public ulong InvFreq;
    public float Scale;
    public int Neox;
    public float AttnFactor;
    /// <summary>The Q, K and V biases (0: none).</summary>
    public ulong Bq;
    public ulong Bk;
    public ulong Bv;

    public static int Count => 28;

    public static void Pointers(MatVecPackedQkvArgs* a, void** p)
    {
        p[0] = &a->Weight; p[1] = &a->RowBytes; p[2] = &a->K; p[3] = &a->Rows; p[4] = &a->Qx; p[5] = &a->Dx; p[6] = &a->Sx;
        p[7] = &a->Dst; p[8] = &a->WarpsPerRow; p[9] = &a->Counters; p[10] = &a->Q; p[11] = &a->KOut; p[12] = &a->V;
        p[13] = &a->KCache; p[14] = &a->VCache; p[15] = &a->Step; p[16] = &a->PosDelta; p[17] = &a->QDim; p[18] = &a->KvDim;
        p[19] = &a->HeadDim; p[20] = &a->Half; p[21] = &a->InvFreq; p[22] = &a->Scale; p[23] = &a->Neox; p[24] = &a->AttnFactor;
        p[25] = &a->Bq; p[26] = &a->Bk; p[27] = &a->Bv;
    }
}

/// <summary>
/// matvec_packed_&lt;type&gt;_glu(w, rowBytes, k, rows, qx, dx, sx, dst, wpr, counters, gate, up, nqx, ndx, nsx, ffn, geglu,
/// quantize): the stacked gate/up product of one token into dst, and the block that finishes a 32-block of both halves
/// (counted on counters[block]) writes gate = act(g) * u, up = u [and gate's q8 quantization into nqx/ndx/nsx, which
/// must not be qx/dx/sx] (glu_split_q8_f32's work).
/// </summary>
internal unsafe struct MatVecPackedGluArgs : IKernelArgs<MatVecPackedGluArgs>
{
    public ulong Weight;
    public long RowBytes;
    public int K;
    public int Rows;
    public ulong Qx;
    public ulong Dx;
    public ulong Sx;
    public ulong Dst;
    public int WarpsPerRow;
    public ulong Counters;
    public ulong Gate;
    public ulong Up;
    public ulong NormQx;
    public ulong NormDx;
    public ulong NormSx;
    public int Ffn;
    public int Geglu;
    public int Quantize;

    public static int Count => 18;

    public static void Pointers(MatVecPackedGluArgs* a, void** p)
    {
        p[0] = &a->Weight; p[1] = &a->RowBytes; p[2] = &a->K; p[3] = &a->Rows; p[4] = &a->Qx; p[5] = &a->Dx; p[6] = &a->Sx;
        p[7] = &a->Dst; p[8] = &a->WarpsPerRow; p[9] = &a->Counters; p[10] = &a->Gate; p[11] = &a->Up; p[12] = &a->NormQx;
        p[13] = &a->NormDx; p[14] = &a->NormSx; p[15] = &a->Ffn; p[16] = &a->Geglu; p[17] = &a->Quantize;
    }
}

/// <summary>
/// matvec_&lt;type&gt;_res(w, rowBytes, k, rows, x, dx, sx, dst, counter, normW, normDst, nqx, ndx, nsx, eps, norm, quantize):
/// a one-token product over weights as stored (matmul.cu) written as dst += W x; with norm the block counted last on
/// counter writes the RMSNorm of dst [and its q8 quantization]. X: the q8 activations for the integer types, the
/// float activations for F32/F16/BF16 (Dx, Sx unused).
/// </summary>
internal unsafe struct MatVecResidualArgs : IKernelArgs<MatVecResidualArgs>
{
    public ulong Weight;
    public long RowBytes;
    public int K;
    public int Rows;
    public ulong X;
    public ulong Dx;
    public ulong Sx;
    public ulong Dst;
    public NormEpilogueArgs Epilogue;
    public int Norm;
    public int Quantize;

    public static int Count => 17;

    public static void Pointers(MatVecResidualArgs* a, void** p)
    {
        p[0] = &a->Weight; p[1] = &a->RowBytes; p[2] = &a->K; p[3] = &a->Rows; p[4] = &a->X; p[5] = &a->Dx; p[6] = &a->Sx;
        p[7] = &a->Dst;
        NormEpilogueArgs.Pointers(&a->Epilogue, p + 8);
        p[15] = &a->Norm; p[16] = &a->Quantize;
    }
}
