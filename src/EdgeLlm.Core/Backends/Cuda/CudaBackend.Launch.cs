using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Backends.Cuda;

// Kernel launches: one method per op family turns a recorded CudaOp into its kernel's IKernelArgs struct and
// grid. Kernels that depend on the position or the token ids read them from the step buffer (_step).
public sealed unsafe partial class CudaBackend
{
    private const int ElementwiseThreads = 256;
    private const int AttentionThreads = 128;

    private CudaBuffer? _qxSource;    // whose activations _qx holds during ExecuteAll
    private int _qxTokens;
    private long _qxK;

    private void Execute(in CudaOp op)
    {
        switch (op.Kind)
        {
            case CudaOpKind.GetRows: ExecGetRows(in op); break;
            case CudaOpKind.RmsNorm: ExecRmsNorm(in op); break;
            case CudaOpKind.MatMul: ExecMatMul(in op); return; // keeps _qxSource when it stays valid
            case CudaOpKind.Rope: ExecRope(in op); break;
            case CudaOpKind.StoreKv: ExecStoreKv(in op); break;
            case CudaOpKind.Attention: ExecAttention(in op); break;
            case CudaOpKind.AttentionSplit: ExecAttentionSplit(in op); break;
            case CudaOpKind.SwiGlu: ExecBinary(_kernels.SwiGlu, in op); break;
            case CudaOpKind.GeGlu: ExecBinary(_kernels.GeGlu, in op); break;
            case CudaOpKind.Add: ExecBinary(_kernels.Add, in op); break;
            case CudaOpKind.AddBias: ExecAddBias(in op); break;
            case CudaOpKind.Scale: ExecScalar(_kernels.Scale, in op, op.Scale); break;
            case CudaOpKind.Softcap: ExecScalar(_kernels.Softcap, in op, op.Softcap); break;
            case CudaOpKind.ArgMax or CudaOpKind.Sample: ExecPick(in op); break; // CudaBackend.Sampling.cs
            case CudaOpKind.Copy:
                nint timing = ProfileBegin();
                CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync(op.Dst!.Ptr + (ulong)(op.DstOffset * sizeof(float)), op.X!.Ptr + (ulong)(op.SrcOffset * sizeof(float)),
                    (nuint)(op.Count * sizeof(float)), _stream), "cuMemcpyDtoDAsync_v2");
                ProfileEnd(CudaProfile.CopyName, timing);
                break;
        }
        _qxSource = null; // every other op may have written the quantized activations' source
    }

    private void ExecGetRows(in CudaOp op)
    {
        var w = op.Weight!;
        var args = new GetRowsArgs { Table = w.Ptr, RowBytes = w.RowBytes, Ne0 = (int)w.Ne0, Ids = _step + sizeof(int), Dst = op.Dst!.Ptr };
        Launch((w.Packed ? _kernels.GetRowsPacked : _kernels.GetRows)[(int)w.Type], (uint)op.Tokens, 1, ElementwiseThreads, ref args);
    }

    private void ExecRmsNorm(in CudaOp op)
    {
        var args = new RmsNormArgs { X = op.X!.Ptr, Weight = op.Weight!.Ptr, Dst = op.Dst!.Ptr, Dim = op.Dim, Eps = op.Eps };
        Launch(_kernels.RmsNorm, (uint)op.Tokens, 1, ElementwiseThreads, ref args);
    }

    /// <summary>
    /// The product of op; <paramref name="residual"/>: with the residual epilogue (dst += W x; packed weights, one token:
    /// CudaLaunchPlanner); <paramref name="norm"/> (an RmsNorm op of dst): also the norm epilogue, whose quantized output
    /// goes to the other q8 set, which then becomes the current one.
    /// </summary>
    private void ExecMatMul(in CudaOp op, bool residual = false, CudaOp? norm = null)
    {
        var w = op.Weight!;
        if (residual && !(w.Packed && op.Tokens == 1)) throw new InvalidOperationException($"{w.Name}: the residual epilogue needs a one-token product over packed weights");
        var x = op.X!;
        int n = op.Tokens, k = (int)w.Ne0, rows = (int)w.Rows;
        uint grid = (uint)((rows + MatVecWarps - 1) / MatVecWarps);
        var fn = n == 1 ? _kernels.MatVecT1[(int)w.Type] : _kernels.MatVecT8[(int)w.Type];
        if (CudaKernels.IsIntegerDot(w.Type))
        {
            if (!ReferenceEquals(_qxSource, x) || _qxTokens != n || _qxK != k) Quantize(x, n, k); // (the plan has quantized it already)
            if (CudaPrefill.UsesGemm(GemmPath, w.Type, n))
            {
                // gemm.cu: a batch of tokens as a tiled GEMM, over the repacked rows or ggml's blocks as uploaded
                var args = new MatVecQ8Args
                {
                    Weight = w.Ptr, RowBytes = w.RowBytes, K = k, Rows = rows, Qx = _qx, Dx = _dx, Sx = _sx, Dst = op.Dst!.Ptr, Tokens = n,
                };
                var (gx, gy) = CudaPrefill.GemmGrid(rows, n);
                var gemm = GemmPath == CudaGemmPath.Mma
                    ? (w.Packed ? _kernels.GemmMmaPacked : _kernels.GemmMma)
                    : (w.Packed ? _kernels.GemmDp4aPacked : _kernels.GemmDp4a);
                Launch(gemm[(int)w.Type], gx, gy, CudaPrefill.GemmThreads, ref args);
            }
            else if (w.Packed)
            {
                // matvec_packed.cu: 16-byte loads of the repacked rows, wpr warps per row (MatVecWarps / wpr rows per block)
                int wpr = CudaRepack.WarpsPerRow(rows, k);
                int rowsPerBlock = MatVecWarps / wpr;
                var packed = new MatVecPackedArgs
                {
                    Weight = w.Ptr, RowBytes = w.RowBytes, K = k, Rows = rows, Qx = _qx, Dx = _dx, Sx = _sx, Dst = op.Dst!.Ptr, Tokens = n, WarpsPerRow = wpr,
                    Residual = residual ? 1 : 0,
                };
                if (norm is { } nm)
                {
                    packed.Residual = 2;
                    packed.Epilogue = NormEpilogue(in nm);
                }
                Launch(n == 1 ? _kernels.PackedT1[(int)w.Type] : _kernels.PackedT8[(int)w.Type], (uint)((rows + rowsPerBlock - 1) / rowsPerBlock), 1, MatVecWarps * 32, ref packed);
                if (norm is { } done)
                {
                    NormEpilogueQuantized(in done);
                    return;
                }
            }
            else
            {
                var args = new MatVecQ8Args
                {
                    Weight = w.Ptr, RowBytes = w.RowBytes, K = k, Rows = rows, Qx = _qx, Dx = _dx, Sx = _sx, Dst = op.Dst!.Ptr, Tokens = n,
                };
                Launch(fn, grid, 1, MatVecWarps * 32, ref args);
            }
        }
        else
        {
            var args = new MatVecFloatArgs { Weight = w.Ptr, RowBytes = w.RowBytes, K = k, Rows = rows, X = x.Ptr, Dst = op.Dst!.Ptr, Tokens = n };
            if (CudaPrefill.UsesGemm(GemmPath, w.Type, n))
            {
                // gemm.cu: half-precision tensor-core tiles for F16/BF16 on sm_80+, float tiles otherwise
                var (gx, gy) = CudaPrefill.GemmGrid(rows, n);
                var gemm = CudaPrefill.UsesHalfMma(GemmPath, w.Type) ? _kernels.GemmHalfMma : _kernels.GemmFloat;
                Launch(gemm[(int)w.Type], gx, gy, CudaPrefill.GemmThreads, ref args);
            }
            else Launch(fn, grid, 1, MatVecWarps * 32, ref args);
        }
        if (ReferenceEquals(op.Dst, _qxSource)) _qxSource = null;
    }

    /// <summary>
    /// The norm epilogue's parameters for <paramref name="norm"/> (an RmsNorm op of the product's output), the same for
    /// matvec_packed_&lt;type&gt;_t1 and matvec_&lt;type&gt;_res: the block counter, the norm, and the other q8 set for its quantization.
    /// </summary>
    private NormEpilogueArgs NormEpilogue(in CudaOp norm) => new()
    {
        Counter = _epilogueCounter, Weight = norm.Weight!.Ptr, Dst = norm.Dst!.Ptr, Qx = _qxOther, Dx = _dxOther, Sx = _sxOther, Eps = norm.Eps,
    };

    /// <summary>After a product with the norm epilogue that quantized: its q8 set becomes the current one, holding <paramref name="norm"/>'s output.</summary>
    private void NormEpilogueQuantized(in CudaOp norm)
    {
        SwapQ8();
        SetQuantized(norm.Dst!, 1, norm.Dim);
    }

    /// <summary>Exchanges the current q8 activations with the other set (a norm epilogue wrote the next ones there).</summary>
    private void SwapQ8()
    {
        (_qx, _qxOther) = (_qxOther, _qx);
        (_dx, _dxOther) = (_dxOther, _dx);
        (_sx, _sxOther) = (_sxOther, _sx);
        _q8Swapped = !_q8Swapped;
    }

    /// <summary>quantize_q8 of <paramref name="n"/> rows of <paramref name="k"/> floats of <paramref name="x"/> into the q8 scratch.</summary>
    private void Quantize(CudaBuffer x, int n, long k)
    {
        long blocks = (long)n * k / 32;
        var q = new QuantizeArgs { X = x.Ptr, Qx = _qx, Dx = _dx, Sx = _sx, Blocks = blocks };
        int perBlock = ElementwiseThreads / 32;
        Launch(_kernels.QuantizeQ8, (uint)((blocks + perBlock - 1) / perBlock), 1, ElementwiseThreads, ref q);
        _qxSource = x;
        _qxTokens = n;
        _qxK = k;
    }

    private void ExecRope(in CudaOp op)
    {
        var spec = op.Rope!;
        var args = new RopeArgs
        {
            X = op.X!.Ptr, Step = _step, PosDelta = op.PosDelta, Tokens = op.Tokens, Heads = op.Heads, HeadDim = spec.HeadDim,
            Half = spec.Dims / 2, InvFreq = op.RopeTable, Scale = spec.Scale, Neox = spec.Neox ? 1 : 0, AttnFactor = spec.AttnFactor,
        };
        long total = (long)op.Tokens * op.Heads * args.Half;
        Launch(_kernels.Rope, (uint)((total + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }

    private void ExecStoreKv(in CudaOp op)
    {
        var args = new StoreKvArgs
        {
            K = op.X!.Ptr, V = op.Y!.Ptr, KCache = op.KCache!.Ptr, VCache = op.VCache!.Ptr, Step = _step,
            PosDelta = op.PosDelta, Tokens = op.Tokens, KvDim = op.KvDim,
        };
        long total = (long)op.Tokens * op.KvDim;
        Launch(_kernels.StoreKv, (uint)((total + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }

    private void ExecAttention(in CudaOp op)
    {
        if (CudaPrefill.UsesFlashAttention(op.Tokens))
        {
            var fa = new AttentionPrefillArgs
            {
                Q = op.X!.Ptr, KCache = op.KCache!.Ptr, VCache = op.VCache!.Ptr, Dst = op.Dst!.Ptr, Step = _step, PosDelta = op.PosDelta,
                Tokens = op.Tokens, Heads = op.Heads, HeadDim = op.HeadDim, KvDim = op.KvDim, Group = op.Heads / (op.KvDim / op.HeadDim),
                Scale = op.Scale, Softcap = op.Softcap, Window = op.Window,
            };
            var (fx, fy) = CudaPrefill.AttentionGrid(op.Heads, op.Tokens);
            Launch(_kernels.AttentionPrefill, fx, fy, CudaPrefill.AttentionThreads, ref fa);
            return;
        }
        // Recording checked the grid (heads, tokens) against CUDA's limits (CudaLaunchLimits.CheckAttentionGrid).
        var args = new AttentionArgs
        {
            Q = op.X!.Ptr, KCache = op.KCache!.Ptr, VCache = op.VCache!.Ptr, Dst = op.Dst!.Ptr, Step = _step, PosDelta = op.PosDelta,
            Heads = op.Heads, HeadDim = op.HeadDim, KvDim = op.KvDim, Group = op.Heads / (op.KvDim / op.HeadDim),
            Scale = op.Scale, Softcap = op.Softcap, Window = op.Window,
        };
        Launch(_kernels.Attention, (uint)op.Heads, (uint)op.Tokens, AttentionThreads, ref args);
    }

    /// <summary>
    /// Flash-decoding: attention_split_f16 over a grid of (kv heads, chunks of the whole context), then
    /// attention_combine_f32 per query head. The grid depends on the context size only, so a captured decode
    /// step replays at every position.
    /// </summary>
    private void ExecAttentionSplit(in CudaOp op)
    {
        int kvHeads = op.KvDim / op.HeadDim;
        var split = new AttentionSplitArgs
        {
            Q = op.X!.Ptr, KCache = op.KCache!.Ptr, VCache = op.VCache!.Ptr, Part = op.Partials, Step = _step, PosDelta = op.PosDelta,
            Heads = op.Heads, HeadDim = op.HeadDim, KvDim = op.KvDim, Group = op.Heads / kvHeads, Scale = op.Scale, Softcap = op.Softcap,
            Window = op.Window, ChunkSize = CudaLaunchLimits.SplitChunk, Chunks = op.Chunks,
        };
        Launch(_kernels.AttentionSplit, (uint)kvHeads, (uint)op.Chunks, CudaLaunchLimits.SplitThreads, ref split);
        var combine = new AttentionCombineArgs
        {
            Part = op.Partials, Dst = op.Dst!.Ptr, Step = _step, PosDelta = op.PosDelta, Heads = op.Heads, HeadDim = op.HeadDim,
            Window = op.Window, ChunkSize = CudaLaunchLimits.SplitChunk, Chunks = op.Chunks,
        };
        Launch(_kernels.AttentionCombine, (uint)op.Heads, 1, AttentionThreads, ref combine);
    }

    /// <summary>x[i] = f(x[i], y[i]) for i &lt; Count (swiglu, geglu, add).</summary>
    private void ExecBinary(CudaFunction fn, in CudaOp op)
    {
        if (op.Count == 0) return;
        var args = new BinaryArgs { X = op.X!.Ptr, Y = op.Y!.Ptr, Elements = op.Count };
        Launch(fn, (uint)((op.Count + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }

    private void ExecAddBias(in CudaOp op)
    {
        if (op.Count == 0) return;
        var args = new AddBiasArgs { X = op.X!.Ptr, Bias = op.Weight!.Ptr, Width = (int)op.Weight.Ne0, Elements = op.Count };
        Launch(_kernels.AddBias, (uint)((op.Count + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }

    /// <summary>x[i] = f(x[i], value) for i &lt; Count (scale, softcap).</summary>
    private void ExecScalar(CudaFunction fn, in CudaOp op, float value)
    {
        if (op.Count == 0) return;
        var args = new ScalarArgs { X = op.X!.Ptr, Value = value, Elements = op.Count };
        Launch(fn, (uint)((op.Count + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }

    /// <summary>Launches <paramref name="fn"/> on the stream with the fields of <paramref name="args"/> as its parameters.</summary>
    private void Launch<T>(CudaFunction fn, uint gridX, uint gridY, uint block, ref T args) where T : unmanaged, IKernelArgs<T>
    {
        void** p = stackalloc void*[T.Count];
        nint timing = ProfileBegin();
        fixed (T* a = &args)
        {
            T.Pointers(a, p);
            int rc = CudaDriver.cuLaunchKernel(fn.Handle, gridX, gridY, 1, block, 1, 1, 0, _stream, p, null);
            if (rc != CudaDriver.Success) throw new CudaException($"cuLaunchKernel({fn.Name})", rc, CudaDriver.ErrorName(rc));
        }
        ProfileEnd(fn.Name, timing);
        if (Settings.SyncEachLaunch)
        {
            int rc = CudaDriver.cuStreamSynchronize(_stream);
            if (rc != CudaDriver.Success) throw CudaLaunchLimits.KernelFault(fn.Name, rc);
        }
    }

    /// <summary>Waits for the stream; a failure names the kernel's fault (or says how to find it).</summary>
    private void SyncStream()
    {
        int rc = CudaDriver.cuStreamSynchronize(_stream);
        if (rc != CudaDriver.Success) throw CudaLaunchLimits.SyncFault("cuStreamSynchronize", rc, Settings.SyncEachLaunch);
    }
}
