using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// Every kernel file compiled (or read from the <see cref="KernelCache"/>) and loaded as a CUDA module, with the
/// function handle of each entry point. <see cref="EntryPoints"/> is the contract between kernels/*.cu and this
/// class: the tests check every name is an <c>.entry</c> of its file's PTX.
/// </summary>
internal sealed class CudaKernels : IDisposable
{
    /// <summary>The suffix of a weight type's kernels (its <see cref="TypeTraits.KernelName"/>), or null for a type without a row.</summary>
    public static string? Suffix(GgmlType t) => TypeTraits.Of(t)?.KernelName;

    public static bool Supports(GgmlType t) => Suffix(t) is not null;

    /// <summary>Weight types whose products use 8-bit activations (dp4a); the others use float activations.</summary>
    public static bool IsIntegerDot(GgmlType t) => TypeTraits.Of(t) is { IsQuantized: true };

    /// <summary>Every weight type with CUDA kernels: every row of the type table, in its order.</summary>
    public static readonly GgmlType[] WeightTypes = Array.ConvertAll(TypeTraits.All.ToArray(), r => r.Type);

    /// <summary>
    /// Weight types with prefill GEMM kernels (kernels/gemm.cu: gemm_mma_&lt;type&gt; for sm_80+, gemm_dp4a_&lt;type&gt;
    /// for sm_61..75): every block-quantized type of the CPU's kernel table (the float types: <see cref="GemmFloatTypes"/>).
    /// </summary>
    public static readonly GgmlType[] GemmTypes =
    [
        GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL,
        GgmlType.Q5_K, GgmlType.IQ4_XS, GgmlType.Q3_K, GgmlType.Q2_K,
    ];

    /// <summary>Float weight types with a prefill GEMM (kernels/gemm.cu gemm_&lt;type&gt;: float FMA tiles, every architecture).</summary>
    public static readonly GgmlType[] GemmFloatTypes = [GgmlType.F32, GgmlType.F16, GgmlType.BF16];

    /// <summary>
    /// Half-precision weight types with a tensor-core prefill GEMM (kernels/gemm.cu gemm_mma_&lt;type&gt;: mma.sync m16n8k16
    /// with f16 / bf16 inputs and f32 accumulators, sm_80 and later; below, their float tiles).
    /// </summary>
    public static readonly GgmlType[] GemmHalfTypes = [GgmlType.F16, GgmlType.BF16];

    public static bool HasGemm(GgmlType t) => Array.IndexOf(GemmTypes, t) >= 0 || Array.IndexOf(GemmFloatTypes, t) >= 0;

    /// <summary>Kernel file -> its extern "C" entry points.</summary>
    public static IReadOnlyDictionary<string, string[]> EntryPoints { get; } = BuildEntryPoints();

    private static Dictionary<string, string[]> BuildEntryPoints()
    {
        var matmul = new List<string>();
        var getRows = new List<string>();
        foreach (var t in WeightTypes)
        {
            matmul.Add($"matvec_{Suffix(t)}_t1");
            matmul.Add($"matvec_{Suffix(t)}_t8");
            matmul.Add($"matvec_{Suffix(t)}_res");
            getRows.Add($"get_rows_{Suffix(t)}");
        }
        var packed = new List<string>();
        foreach (var t in CudaRepack.Types)
        {
            packed.Add($"matvec_packed_{Suffix(t)}_t1");
            packed.Add($"matvec_packed_{Suffix(t)}_t8");
            packed.Add($"matvec_packed_{Suffix(t)}_qkv");
            packed.Add($"matvec_packed_{Suffix(t)}_glu");
            packed.Add($"get_rows_packed_{Suffix(t)}");
        }
        var gemm = new List<string>();
        foreach (var t in GemmTypes)
        {
            gemm.Add($"gemm_mma_{Suffix(t)}");
            gemm.Add($"gemm_dp4a_{Suffix(t)}");
            gemm.Add($"gemm_mma_{Suffix(t)}_packed");
            gemm.Add($"gemm_dp4a_{Suffix(t)}_packed");
        }
        foreach (var t in GemmFloatTypes) gemm.Add($"gemm_{Suffix(t)}");
        foreach (var t in GemmHalfTypes) gemm.Add($"gemm_mma_{Suffix(t)}");
        return new Dictionary<string, string[]>
        {
            ["attention.cu"] = ["attention_f16", "attention_split_f16", "attention_combine_f32", "attention_flash_f16"],
            ["attention_prefill.cu"] = ["attention_prefill_f16", "attention_prefill_f32"],
            ["gemm.cu"] = gemm.ToArray(),
            ["fused.cu"] = ["add_rmsnorm_q8_f32", "rope_store_qkv_f32", "glu_split_q8_f32", "split_rows_f32"],
            ["elementwise.cu"] = ["swiglu_f32", "geglu_f32", "add_bias_f32", "scale_f32", "softcap_f32", "add_f32", "store_kv_f16"],
            ["get_rows.cu"] = getRows.ToArray(),
            ["matmul.cu"] = matmul.ToArray(),
            ["matvec_packed.cu"] = packed.ToArray(),
            ["quantize.cu"] = ["quantize_q8"],
            ["rmsnorm.cu"] = ["rmsnorm_f32"],
            ["rope.cu"] = ["rope_f32"],
            ["sample.cu"] = ["argmax_f32", "sample_f32"],
        };
    }

    private readonly List<nint> _modules = new();
    private readonly Dictionary<string, CudaFunction> _functions = new();

    public CudaFunction QuantizeQ8, RmsNorm, Rope, SwiGlu, GeGlu, AddBias, Scale, Softcap, Add, StoreKv, Attention, AttentionSplit, AttentionCombine, ArgMax, AttentionPrefill, Sample;

    /// <summary>kernels/fused.cu (see <see cref="CudaLaunchPlanner"/>).</summary>
    public CudaFunction AddRmsNormQ8, RopeStoreQkv, GluSplitQ8, SplitRows;

    /// <summary>attention_flash_f16 (kernels/attention.cu): split attention and its combine in one launch.</summary>
    public CudaFunction AttentionFlash;

    /// <summary>Indexed by (int)GgmlType: the NT=1 and NT=8 product kernels and the row dequantizer of that type.</summary>
    public readonly CudaFunction[] MatVecT1 = new CudaFunction[64], MatVecT8 = new CudaFunction[64], GetRows = new CudaFunction[64];

    /// <summary>Indexed by (int)GgmlType for <see cref="CudaRepack.Types"/>: the kernels of matvec_packed.cu.</summary>
    public readonly CudaFunction[] PackedT1 = new CudaFunction[64], PackedT8 = new CudaFunction[64], GetRowsPacked = new CudaFunction[64];

    /// <summary>matvec_&lt;type&gt;_res: a one-token product over weights as stored with the residual [+ norm] epilogue.</summary>
    public readonly CudaFunction[] MatVecRes = new CudaFunction[64];

    /// <summary>matvec_packed_&lt;type&gt;_qkv and _glu: a stacked one-token product with the rope + kv store or the glu + q8 epilogue.</summary>
    public readonly CudaFunction[] PackedQkv = new CudaFunction[64], PackedGlu = new CudaFunction[64];
    /// <summary>Indexed by (int)GgmlType: the prefill GEMMs of the <see cref="GemmTypes"/> (default elsewhere), over ggml's blocks (mapped weights) and over the repacked rows (<see cref="CudaRepack"/>).</summary>
    public readonly CudaFunction[] GemmMma = new CudaFunction[64], GemmDp4a = new CudaFunction[64],
        GemmMmaPacked = new CudaFunction[64], GemmDp4aPacked = new CudaFunction[64];

    /// <summary>Indexed by (int)GgmlType: the float GEMMs of the <see cref="GemmFloatTypes"/>.</summary>
    public readonly CudaFunction[] GemmFloat = new CudaFunction[64];

    /// <summary>Indexed by (int)GgmlType: the tensor-core GEMMs of the <see cref="GemmHalfTypes"/> (sm_80 and later).</summary>
    public readonly CudaFunction[] GemmHalfMma = new CudaFunction[64];

    /// <summary>How many files came from the disk cache and how many were compiled.</summary>
    public int CacheHits { get; private set; }
    public int Compiled { get; private set; }

    /// <summary>Builds (or reads from the cache) and loads every kernel file for <paramref name="target"/>. A context must be current.</summary>
    public static unsafe CudaKernels Load(CudaDeviceInfo device, KernelTarget target, KernelCache cache)
    {
        var k = new CudaKernels();
        try
        {
            var headers = KernelSources.HeaderFiles;
            var options = KernelCompiler.Options(target.Arch, target.Cubin);
            var files = KernelSources.Files;
            foreach (var (file, _) in files)
                if (!EntryPoints.ContainsKey(file))
                    throw new InvalidOperationException($"kernels/{file} is embedded but CudaKernels.EntryPoints does not list it");

            // First the images: read from the cache or compiled, the NVRTC programs on every core at once (they are
            // independent, and a first run on a Jetson compiles for tens of seconds). No driver call happens here.
            var keys = new ulong[files.Count];
            var images = new byte[]?[files.Count];
            var cached = new bool[files.Count];
            var errors = new Exception?[files.Count];
            Parallel.For(0, files.Count, i =>
            {
                var (file, source) = files[i];
                try
                {
                    keys[i] = KernelCache.Key(file, source, headers, options, target.Arch, target.Cubin, device.DriverVersion, (target.NvrtcMajor, target.NvrtcMinor));
                    images[i] = cache.TryRead(keys[i], target.Cubin);
                    cached[i] = images[i] is not null;
                    images[i] ??= KernelCompiler.Compile(file, source, headers, options, target.Arch, target.Cubin).Image;
                }
                catch (Exception e) { errors[i] = e; }
            });
            // The first failing file in file order, thrown as itself (not wrapped), as the one-at-a-time loop did.
            foreach (var e in errors)
                if (e is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);

            // Then the modules, on this thread (its context is current), in file order.
            for (int i = 0; i < files.Count; i++)
            {
                var (file, source) = files[i];
                var names = EntryPoints[file];
                byte[] image = images[i]!;
                nint module = 0;
                if (cached[i] && TryLoadModule(image, out module) == CudaDriver.Success)
                {
                    k.CacheHits++;
                }
                else
                {
                    // Not cached, or the cached image no longer loads (a driver change the key missed): rebuild it.
                    if (cached[i]) image = KernelCompiler.Compile(file, source, headers, options, target.Arch, target.Cubin).Image;
                    k.Compiled++;
                    CudaDriver.Check(TryLoadModule(image, out module), $"cuModuleLoadData({file})");
                    cache.TryWrite(keys[i], target.Cubin, image);
                }
                k._modules.Add(module);
                foreach (string name in names)
                {
                    CudaDriver.Check(CudaDriver.cuModuleGetFunction(out nint f, module, name), $"cuModuleGetFunction({name})");
                    k._functions[name] = new CudaFunction(f, name);
                }
            }
            k.Bind();
            return k;
        }
        catch
        {
            k.Dispose();
            throw;
        }
    }

    private static unsafe int TryLoadModule(byte[] image, out nint module)
    {
        fixed (byte* p = image) return CudaDriver.cuModuleLoadData(out module, p);
    }

    private void Bind()
    {
        QuantizeQ8 = _functions["quantize_q8"];
        RmsNorm = _functions["rmsnorm_f32"];
        Rope = _functions["rope_f32"];
        SwiGlu = _functions["swiglu_f32"];
        GeGlu = _functions["geglu_f32"];
        AddBias = _functions["add_bias_f32"];
        Scale = _functions["scale_f32"];
        Softcap = _functions["softcap_f32"];
        Add = _functions["add_f32"];
        StoreKv = _functions["store_kv_f16"];
        Attention = _functions["attention_f16"];
        AttentionSplit = _functions["attention_split_f16"];
        AttentionCombine = _functions["attention_combine_f32"];
        ArgMax = _functions["argmax_f32"];
        AttentionPrefill = _functions["attention_prefill_f16"];
        foreach (var t in GemmTypes)
        {
            GemmMma[(int)t] = _functions[$"gemm_mma_{Suffix(t)}"];
            GemmDp4a[(int)t] = _functions[$"gemm_dp4a_{Suffix(t)}"];
            GemmMmaPacked[(int)t] = _functions[$"gemm_mma_{Suffix(t)}_packed"];
            GemmDp4aPacked[(int)t] = _functions[$"gemm_dp4a_{Suffix(t)}_packed"];
        }
        foreach (var t in GemmFloatTypes) GemmFloat[(int)t] = _functions[$"gemm_{Suffix(t)}"];
        foreach (var t in GemmHalfTypes) GemmHalfMma[(int)t] = _functions[$"gemm_mma_{Suffix(t)}"];
        AddRmsNormQ8 = _functions["add_rmsnorm_q8_f32"];
        RopeStoreQkv = _functions["rope_store_qkv_f32"];
        GluSplitQ8 = _functions["glu_split_q8_f32"];
        SplitRows = _functions["split_rows_f32"];
        AttentionFlash = _functions["attention_flash_f16"];
        Sample = _functions["sample_f32"];
        foreach (var t in WeightTypes)
        {
            MatVecT1[(int)t] = _functions[$"matvec_{Suffix(t)}_t1"];
            MatVecT8[(int)t] = _functions[$"matvec_{Suffix(t)}_t8"];
            MatVecRes[(int)t] = _functions[$"matvec_{Suffix(t)}_res"];
            GetRows[(int)t] = _functions[$"get_rows_{Suffix(t)}"];
        }
        foreach (var t in CudaRepack.Types)
        {
            PackedT1[(int)t] = _functions[$"matvec_packed_{Suffix(t)}_t1"];
            PackedT8[(int)t] = _functions[$"matvec_packed_{Suffix(t)}_t8"];
            PackedQkv[(int)t] = _functions[$"matvec_packed_{Suffix(t)}_qkv"];
            PackedGlu[(int)t] = _functions[$"matvec_packed_{Suffix(t)}_glu"];
            GetRowsPacked[(int)t] = _functions[$"get_rows_packed_{Suffix(t)}"];
        }
    }

    public void Dispose()
    {
        foreach (nint m in _modules) CudaDriver.cuModuleUnload(m);
        _modules.Clear();
        _functions.Clear();
    }
}

/// <summary>A loaded kernel: its driver handle and its entry-point name (for errors and EDGELLM_CUDA_SYNC reports).</summary>
internal readonly record struct CudaFunction(nint Handle, string Name);
