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

/// <summary>rope_store_qkv_f32(qkv, q, k, v, kc, vc, step, posDelta, nTokens, qDim, kvDim, headDim, half, invFreq, scale, neox, attnFactor).</summary>
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

    public static int Count => 17;

    public static void Pointers(RopeStoreQkvArgs* a, void** p)
    {
        p[0] = &a->Qkv; p[1] = &a->Q; p[2] = &a->K; p[3] = &a->V; p[4] = &a->KCache; p[5] = &a->VCache; p[6] = &a->Step;
        p[7] = &a->PosDelta; p[8] = &a->Tokens; p[9] = &a->QDim; p[10] = &a->KvDim; p[11] = &a->HeadDim; p[12] = &a->Half;
        p[13] = &a->InvFreq; p[14] = &a->Scale; p[15] = &a->Neox; p[16] = &a->AttnFactor;
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
