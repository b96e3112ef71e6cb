using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;

namespace EdgeLlm.Backends.Cuda;

// Fewer kernels per layer (issue 17 item 2): stacked Q/K/V and gate/up weights (IStackedMatMul), and the launches of
// the fused kernels of kernels/fused.cu that CudaLaunchPlanner picks for a recorded step.
public sealed unsafe partial class CudaBackend : IStackedMatMul
{
    private readonly Dictionary<CudaWeight, (int P0, int P1, int P2)> _stacks = new(ReferenceEqualityComparer.Instance);
    private readonly List<CudaLaunch> _plan = new();
    private CudaBuffer? _stackOut; // a stacked product's [tokens, rows] output before its split
    private long _stackRows;       // the most rows of a stacked weight
    private CudaBuffer? _stackCounters; // the stacked products' epilogue counters (per head or per 32-block), zero between launches

    /// <summary>
    /// Stacks the parts' rows on the host and loads the result as one weight (through <see cref="LoadWeight"/>, so it
    /// is uploaded like any other). Null, keeping the parts apart, when the weights are read in place from the
    /// registered memory map (an integrated GPU: a stacked copy would duplicate them in the shared memory), when
    /// the parts differ in type or row length, or with EDGELLM_CUDA_FUSE=0 (the launches of before, for A/B).
    /// </summary>
    public BackendWeight? LoadStacked(string name, ReadOnlySpan<TensorView> parts)
    {
        if (WeightsMapped || !Settings.Fuse || parts.Length is < 2 or > 3) return null;
        var type = parts[0].Type;
        long ne0 = parts[0].Ne0, rows = 0, bytes = 0;
        foreach (var p in parts)
        {
            if (p.Type != type || p.Ne0 != ne0 || p.Dims.Length != 2 || p.Rows < 1) return null;
            rows += p.Rows;
            bytes += p.ByteLength;
        }
        if (rows > int.MaxValue || bytes != GgmlTypes.RowBytes(type, ne0) * rows) return null;
        byte* host = (byte*)NativeMemory.Alloc((nuint)bytes);
        try
        {
            long at = 0;
            foreach (var p in parts)
            {
                Buffer.MemoryCopy(p.Data, host + at, bytes - at, p.ByteLength);
                at += p.ByteLength;
            }
            // LoadWeight has copied the bytes (into pinned staging or the device) when it returns.
            var w = (CudaWeight)LoadWeight(new TensorView(name, type, [ne0, rows], host, bytes));
            _stacks[w] = ((int)parts[0].Rows, (int)parts[1].Rows, parts.Length == 3 ? (int)parts[2].Rows : 0);
            _stackRows = Math.Max(_stackRows, rows);
            return w;
        }
        finally
        {
            NativeMemory.Free(host);
        }
    }

    public void MatMulStacked(BackendWeight stacked, BackendBuffer x, int nTokens, BackendBuffer dst0, BackendBuffer dst1, BackendBuffer? dst2)
    {
        Ready();
        var w = Wt(stacked);
        if (!_stacks.TryGetValue(w, out var parts)) throw new ArgumentException($"{w.Name} was not loaded by LoadStacked");
        if ((parts.P2 == 0) != (dst2 is null)) throw new ArgumentException($"{w.Name} stacks {(parts.P2 == 0 ? 2 : 3)} weights");
        var a = Buf(x, "matmul x");
        if (nTokens < 1 || nTokens > _limits.MaxBatch) throw new ArgumentOutOfRangeException(nameof(nTokens), $"matmul of {nTokens} tokens is outside the prepared batch of {_limits.MaxBatch}");
        if (w.Ne0 > _limits.MaxRowLength) throw new ArgumentException($"{w.Name} rows of {w.Ne0} exceed the prepared row of {_limits.MaxRowLength}");
        Need(a, nTokens * w.Ne0, "matmul x");
        var d0 = Buf(dst0, "matmul dst0");
        var d1 = Buf(dst1, "matmul dst1");
        var d2 = dst2 is null ? null : Buf(dst2, "matmul dst2");
        Need(d0, (long)nTokens * parts.P0, "matmul dst0");
        Need(d1, (long)nTokens * parts.P1, "matmul dst1");
        if (d2 is not null) Need(d2, (long)nTokens * parts.P2, "matmul dst2");
        Record(new CudaOp
        {
            Kind = CudaOpKind.MatMulStacked, Weight = w, X = a, Dst = d0, Dst1 = d1, Dst2 = d2, Part0 = parts.P0, Part1 = parts.P1, Part2 = parts.P2,
            Tokens = nTokens, StackOut = StackOut(), Counters = StackCounters(),
        });
    }

    /// <summary>The stacked products' output scratch: MaxBatch rows of the widest stack (allocated at the first stacked product).</summary>
    private CudaBuffer StackOut()
    {
        long need = _stackRows * _limits.MaxBatch;
        if (_stackOut is null || _stackOut.Length < need) _stackOut = (CudaBuffer)Allocate(need);
        return _stackOut;
    }

    /// <summary>
    /// The counters of matvec_packed_*_qkv (one per head, of any size) and _glu (one per 32-block of the gate half): one
    /// per row of the widest stack, zeroed once; each launch leaves them at zero.
    /// </summary>
    private ulong StackCounters()
    {
        long need = _stackRows + 1;
        if (_stackCounters is null || _stackCounters.Length < need)
        {
            _stackCounters = (CudaBuffer)Allocate(need);
            CudaDriver.Check(CudaDriver.cuMemsetD8Async(_stackCounters.Ptr, 0, (nuint)(need * sizeof(int)), _stream), "cuMemsetD8Async");
        }
        return _stackCounters.Ptr;
    }

    /// <summary>Plans the recorded step (fused or not, <see cref="CudaSettings.Fuse"/>) and launches it.</summary>
    private void ExecuteAll()
    {
        _qxSource = null;
        if (_q8Swapped) SwapQ8(); // every step (and so every captured graph) starts from the same q8 set
        var ops = _ops.AsSpan(0, _opCount);
        CudaLaunchPlanner.Plan(ops, _plan, Settings.Fuse);
        foreach (var l in _plan) ExecuteLaunch(in l, ops);
        _qxSource = null;
    }

    private void ExecuteLaunch(in CudaLaunch l, ReadOnlySpan<CudaOp> ops)
    {
        ref readonly var op = ref ops[l.Op];
        switch (l.Kind)
        {
            case LaunchKind.Quantize:
                Quantize(op.X!, op.Tokens, op.Weight!.Ne0);
                return;
            case LaunchKind.MatVec:
                if (op.Kind == CudaOpKind.MatMulStacked) ExecMatMul(op with { Kind = CudaOpKind.MatMul, Dst = op.StackOut });
                else ExecMatMul(in op);
                return; // keeps _qxSource when it stays valid
            case LaunchKind.AddRmsNormQ8:
                ExecAddRmsNormQ8(in op, l.Aux < 0 ? null : ops[l.Aux].Y, l.Quantize);
                if (l.Quantize) { SetQuantized(op.Dst!, op.Tokens, op.Dim); return; }
                break;
            case LaunchKind.RopeStoreQkv:
                ExecRopeStoreQkv(ops, l.Op, l.Aux);
                break;
            case LaunchKind.GluSplitQ8:
                ExecGluSplit(in op, ops[l.Aux].Kind == CudaOpKind.GeGlu, l.Quantize);
                if (l.Quantize) { SetQuantized(op.Dst!, op.Tokens, op.Part0); return; }
                break;
            case LaunchKind.SplitRows:
                ExecSplitRows(in op);
                break;
            case LaunchKind.MatVecResidual when !op.Weight!.Packed:
                ExecMatVecResidual(in op, ops[l.Aux].X!, null, quantize: false);
                break;
            case LaunchKind.MatVecResidualNorm when !op.Weight!.Packed:
                ExecMatVecResidual(in op, ops[l.Aux].X!, ops[l.Aux + 1], l.Quantize);
                if (l.Quantize) return; // the norm's output is the current q8 set
                break;
            case LaunchKind.MatVecResidual:
                ExecMatMul(op with { Dst = ops[l.Aux].X }, residual: true);
                return; // keeps _qxSource when it stays valid
            case LaunchKind.MatVecResidualNorm:
                ExecMatMul(op with { Dst = ops[l.Aux].X }, residual: true, norm: ops[l.Aux + 1]);
                return; // the norm's output is the current q8 set
            case LaunchKind.MatVecRopeStore:
                ExecMatVecRopeStore(ops, l.Op, l.Aux);
                break;
            case LaunchKind.MatVecGlu:
                ExecMatVecGlu(in op, ops[l.Aux].Kind == CudaOpKind.GeGlu, l.Quantize);
                if (l.Quantize) { SetQuantized(op.Dst!, op.Tokens, op.Part0); return; }
                break;
            case LaunchKind.AttentionFlash:
                ExecAttentionFlash(in op, l.Quantize);
                if (l.Quantize) { SetQuantized(op.Dst!, op.Tokens, (long)op.Heads * op.HeadDim); return; }
                break;
            default:
                Execute(in op);
                return; // Execute keeps _qxSource right itself
        }
        _qxSource = null;
    }

    private void SetQuantized(CudaBuffer x, int tokens, long k)
    {
        _qxSource = x;
        _qxTokens = tokens;
        _qxK = k;
    }

    private void ExecAddRmsNormQ8(in CudaOp norm, CudaBuffer? residual, bool quantize)
    {
        var args = new AddRmsNormQ8Args
        {
            X = norm.X!.Ptr, Y = residual?.Ptr ?? 0, Weight = norm.Weight!.Ptr, Dst = norm.Dst!.Ptr, Qx = _qx, Dx = _dx, Sx = _sx,
            Dim = norm.Dim, Eps = norm.Eps, Residual = residual is null ? 0 : 1, Quantize = quantize ? 1 : 0,
        };
        Launch(_kernels.AddRmsNormQ8, (uint)norm.Tokens, 1, ElementwiseThreads, ref args);
    }

    /// <summary>
    /// The biases that the bias adds between the stacked Q/K/V product at ops[<paramref name="stacked"/>] and the ropes
    /// before the kv store at ops[<paramref name="store"/>] add to its q, k and v parts (0: none; CudaLaunchPlanner.BiasOps).
    /// </summary>
    private static (ulong Q, ulong K, ulong V) QkvBiases(ReadOnlySpan<CudaOp> ops, int stacked, int store)
    {
        ref readonly var s = ref ops[stacked];
        ulong bq = 0, bk = 0, bv = 0;
        for (int j = stacked + 1; j < store - 2; j++)
        {
            ref readonly var b = ref ops[j];
            if (ReferenceEquals(b.X, s.Dst)) bq = b.Weight!.Ptr;
            else if (ReferenceEquals(b.X, s.Dst1)) bk = b.Weight!.Ptr;
            else bv = b.Weight!.Ptr;
        }
        return (bq, bk, bv);
    }

    private void ExecRopeStoreQkv(ReadOnlySpan<CudaOp> ops, int at, int storeAt)
    {
        ref readonly var stacked = ref ops[at];
        ref readonly var ropeQ = ref ops[storeAt - 2];
        ref readonly var store = ref ops[storeAt];
        var spec = ropeQ.Rope!;
        var (bq, bk, bv) = QkvBiases(ops, at, storeAt);
        var args = new RopeStoreQkvArgs
        {
            Qkv = stacked.StackOut!.Ptr, Q = stacked.Dst!.Ptr, K = stacked.Dst1!.Ptr, V = stacked.Dst2!.Ptr,
            KCache = store.KCache!.Ptr, VCache = store.VCache!.Ptr, Step = _step, PosDelta = ropeQ.PosDelta, Tokens = stacked.Tokens,
            QDim = stacked.Part0, KvDim = stacked.Part1, HeadDim = spec.HeadDim, Half = spec.Dims / 2, InvFreq = ropeQ.RopeTable,
            Scale = spec.Scale, Neox = spec.Neox ? 1 : 0, AttnFactor = spec.AttnFactor, Bq = bq, Bk = bk, Bv = bv,
        };
        long total = (long)stacked.Tokens * (stacked.Part0 + 2L * stacked.Part1);
        Launch(_kernels.RopeStoreQkv, (uint)((total + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }

    private void ExecGluSplit(in CudaOp stacked, bool geglu, bool quantize)
    {
        var args = new GluSplitArgs
        {
            GateUp = stacked.StackOut!.Ptr, Gate = stacked.Dst!.Ptr, Up = stacked.Dst1!.Ptr, Qx = _qx, Dx = _dx, Sx = _sx,
            Ffn = stacked.Part0, Tokens = stacked.Tokens, Geglu = geglu ? 1 : 0, Quantize = quantize ? 1 : 0,
        };
        long total = (long)stacked.Tokens * stacked.Part0;
        Launch(_kernels.GluSplitQ8, (uint)((total + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }

    /// <summary>
    /// attention_flash_f16 over ExecAttentionSplit's fixed grid (kv heads, chunks of the whole context): the last block
    /// of each kv head combines (op.Counters: zero between launches) [and quantizes the output for the Wo product].
    /// </summary>
    private void ExecAttentionFlash(in CudaOp op, bool quantize)
    {
        int kvHeads = op.KvDim / op.HeadDim;
        var args = new AttentionFlashArgs
        {
            Q = op.X!.Ptr, KCache = op.KCache!.Ptr, VCache = op.VCache!.Ptr, Part = op.Partials, Dst = op.Dst!.Ptr, Qx = _qx, Dx = _dx, Sx = _sx,
            Counters = op.Counters, Step = _step, PosDelta = op.PosDelta, Heads = op.Heads, HeadDim = op.HeadDim, KvDim = op.KvDim,
            Group = op.Heads / kvHeads, Scale = op.Scale, Softcap = op.Softcap, Window = op.Window, ChunkSize = CudaLaunchLimits.SplitChunk,
            Chunks = op.Chunks, Quantize = quantize ? 1 : 0,
        };
        Launch(_kernels.AttentionFlash, (uint)kvHeads, (uint)op.Chunks, CudaLaunchLimits.SplitThreads, ref args);
    }

    /// <summary>The q8 activations of a one-token product over <paramref name="w"/> (the plan has quantized them already).</summary>
    private void EnsureQuantized(CudaBuffer x, CudaWeight w)
    {
        if (!ReferenceEquals(_qxSource, x) || _qxTokens != 1 || _qxK != w.Ne0) Quantize(x, 1, w.Ne0);
    }

    /// <summary>matvec_packed_&lt;type&gt;_qkv: the stacked Q/K/V product with rope_store_qkv_f32's work (biases included) as its epilogue.</summary>
    private void ExecMatVecRopeStore(ReadOnlySpan<CudaOp> ops, int at, int storeAt)
    {
        ref readonly var stacked = ref ops[at];
        ref readonly var ropeQ = ref ops[storeAt - 2];
        ref readonly var store = ref ops[storeAt];
        var (bq, bk, bv) = QkvBiases(ops, at, storeAt);
        var w = stacked.Weight!;
        if (stacked.Tokens != 1 || !w.Packed) throw new InvalidOperationException($"{w.Name}: the rope epilogue needs a one-token product over packed weights");
        EnsureQuantized(stacked.X!, w);
        var spec = ropeQ.Rope!;
        int k = (int)w.Ne0, rows = (int)w.Rows, wpr = CudaRepack.WarpsPerRow(rows, k), rowsPerBlock = MatVecWarps / wpr;
        var args = new MatVecPackedQkvArgs
        {
            Weight = w.Ptr, RowBytes = w.RowBytes, K = k, Rows = rows, Qx = _qx, Dx = _dx, Sx = _sx, Dst = stacked.StackOut!.Ptr, WarpsPerRow = wpr,
            Counters = stacked.Counters, Q = stacked.Dst!.Ptr, KOut = stacked.Dst1!.Ptr, V = stacked.Dst2!.Ptr, KCache = store.KCache!.Ptr,
            VCache = store.VCache!.Ptr, Step = _step, PosDelta = ropeQ.PosDelta, QDim = stacked.Part0, KvDim = stacked.Part1, HeadDim = spec.HeadDim,
            Half = spec.Dims / 2, InvFreq = ropeQ.RopeTable, Scale = spec.Scale, Neox = spec.Neox ? 1 : 0, AttnFactor = spec.AttnFactor,
            Bq = bq, Bk = bk, Bv = bv,
        };
        Launch(_kernels.PackedQkv[(int)w.Type], (uint)((rows + rowsPerBlock - 1) / rowsPerBlock), 1, MatVecWarps * 32, ref args);
    }

    /// <summary>
    /// matvec_packed_&lt;type&gt;_glu: the stacked gate/up product with glu_split_q8_f32's work as its epilogue; the
    /// quantization goes to the other q8 set (the product's blocks still read the current one), which then becomes current.
    /// </summary>
    private void ExecMatVecGlu(in CudaOp stacked, bool geglu, bool quantize)
    {
        var w = stacked.Weight!;
        if (stacked.Tokens != 1 || !w.Packed) throw new InvalidOperationException($"{w.Name}: the glu epilogue needs a one-token product over packed weights");
        EnsureQuantized(stacked.X!, w);
        int k = (int)w.Ne0, rows = (int)w.Rows, wpr = CudaRepack.WarpsPerRow(rows, k), rowsPerBlock = MatVecWarps / wpr;
        var args = new MatVecPackedGluArgs
        {
            Weight = w.Ptr, RowBytes = w.RowBytes, K = k, Rows = rows, Qx = _qx, Dx = _dx, Sx = _sx, Dst = stacked.StackOut!.Ptr, WarpsPerRow = wpr,
            Counters = stacked.Counters, Gate = stacked.Dst!.Ptr, Up = stacked.Dst1!.Ptr, NormQx = _qxOther, NormDx = _dxOther, NormSx = _sxOther,
            Ffn = stacked.Part0, Geglu = geglu ? 1 : 0, Quantize = quantize ? 1 : 0,
        };
        Launch(_kernels.PackedGlu[(int)w.Type], (uint)((rows + rowsPerBlock - 1) / rowsPerBlock), 1, MatVecWarps * 32, ref args);
        if (quantize) SwapQ8();
    }

    /// <summary>
    /// matvec_&lt;type&gt;_res: the one-token product of op over weights as stored, added into <paramref name="residual"/>
    /// (x += W a); with <paramref name="norm"/> the last block writes that norm [and its quantization, into the other q8
    /// set, which then becomes the current one].
    /// </summary>
    private void ExecMatVecResidual(in CudaOp op, CudaBuffer residual, CudaOp? norm, bool quantize)
    {
        var w = op.Weight!;
        if (op.Tokens != 1 || w.Packed) throw new InvalidOperationException($"{w.Name}: matvec_res is a one-token product over weights as stored");
        bool integer = CudaKernels.IsIntegerDot(w.Type);
        if (integer) EnsureQuantized(op.X!, w);
        int rows = (int)w.Rows;
        var args = new MatVecResidualArgs
        {
            Weight = w.Ptr, RowBytes = w.RowBytes, K = (int)w.Ne0, Rows = rows, X = integer ? _qx : op.X!.Ptr, Dx = _dx, Sx = _sx, Dst = residual.Ptr,
        };
        if (norm is { } nm)
        {
            args.Norm = 1;
            args.Epilogue = NormEpilogue(in nm);
            args.Quantize = quantize ? 1 : 0;
        }
        Launch(_kernels.MatVecRes[(int)w.Type], (uint)((rows + MatVecWarps - 1) / MatVecWarps), 1, MatVecWarps * 32, ref args);
        if (norm is { } done && quantize) NormEpilogueQuantized(in done);
    }

    private void ExecSplitRows(in CudaOp stacked)
    {
        var args = new SplitRowsArgs
        {
            Src = stacked.StackOut!.Ptr, D0 = stacked.Dst!.Ptr, D1 = stacked.Dst1!.Ptr, D2 = stacked.Dst2?.Ptr ?? 0,
            W0 = stacked.Part0, W1 = stacked.Part1, W2 = stacked.Part2, Tokens = stacked.Tokens,
        };
        long total = (long)stacked.Tokens * (stacked.Part0 + stacked.Part1 + stacked.Part2);
        Launch(_kernels.SplitRows, (uint)((total + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, ref args);
    }
}
