using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using EdgeLlm.Backends.Cuda;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// Each kernel-argument struct (<see cref="IKernelArgs{TSelf}"/>) against the <c>.param</c> list NVRTC writes for
/// its kernels: <c>Pointers</c> hands out every field exactly once, in declaration order, and field i has the
/// PTX type of parameter i (u64 for pointers and 64-bit integers, u32 for int, f32 for float, f64 for double). A parameter
/// added, dropped or reordered in a kernel file, or a field in the wrong place, fails here without a GPU.
/// </summary>
public unsafe class KernelArgsTests
{
    private static readonly Dictionary<string, string> Ptx = new();

    private static string PtxOf(string file)
    {
        lock (Ptx)
        {
            if (!Ptx.TryGetValue(file, out string? ptx))
            {
                var k = KernelCompileMemo.Compile(file, CudaProbe.MinArch, cubin: false);
                Ptx[file] = ptx = Encoding.UTF8.GetString(k.Image).TrimEnd('\0');
            }
            return ptx;
        }
    }

    /// <summary>The PTX types of <paramref name="entry"/>'s parameters, in order.</summary>
    private static string[] ParamTypes(string file, string entry)
    {
        string ptx = PtxOf(file);
        var m = Regex.Match(ptx, @"\.entry " + Regex.Escape(entry) + @"\((.*?)\)", RegexOptions.Singleline);
        Assert.True(m.Success, $"{file}: no .entry {entry} in the PTX");
        var ps = Regex.Matches(m.Groups[1].Value, @"\.param\s+\.(\w+)[^,]*?" + Regex.Escape(entry) + @"_param_(\d+)");
        var types = new string[ps.Count];
        for (int i = 0; i < ps.Count; i++)
        {
            Assert.Equal(i, int.Parse(ps[i].Groups[2].Value));
            types[i] = ps[i].Groups[1].Value;
        }
        return types;
    }

    /// <summary>
    /// The public instance fields of <paramref name="t"/> in declaration order with their offsets from
    /// <paramref name="at"/>, a field of a struct type (<see cref="NormEpilogueArgs"/>) standing for its own fields.
    /// </summary>
    private static IEnumerable<(long Offset, Type Type, string Name)> Flattened(Type t, long at)
    {
        foreach (var f in t.GetFields(BindingFlags.Public | BindingFlags.Instance))
        {
            long offset = at + (long)Marshal.OffsetOf(t, f.Name);
            if (f.FieldType.IsPrimitive) yield return (offset, f.FieldType, f.Name);
            else
                foreach (var inner in Flattened(f.FieldType, offset)) yield return (inner.Offset, inner.Type, $"{f.Name}.{inner.Name}");
        }
    }

    /// <summary>The field types of T in the order Pointers hands them out, checking each field appears once.</summary>
    private static Type[] FieldsInLaunchOrder<T>() where T : unmanaged, IKernelArgs<T>
    {
        var fields = Flattened(typeof(T), 0).ToArray();
        Assert.Equal(fields.Length, T.Count);
        T value = default;
        void** p = stackalloc void*[T.Count];
        T.Pointers(&value, p);
        var types = new Type[T.Count];
        for (int i = 0; i < T.Count; i++)
        {
            long offset = (byte*)p[i] - (byte*)&value;
            // Declaration order is launch order: parameter i is field i.
            Assert.True(fields[i].Offset == offset, $"{typeof(T).Name}: parameter {i} points at offset {offset}, field {fields[i].Name} is at {fields[i].Offset}");
            types[i] = fields[i].Type;
        }
        return types;
    }

    private static string PtxType(Type t) =>
        t == typeof(ulong) || t == typeof(long) ? "u64" : t == typeof(int) ? "u32" : t == typeof(float) ? "f32" : t == typeof(double) ? "f64" : throw new ArgumentException($"no PTX type for {t}");

    private static void Check<T>(string file, params string[] entries) where T : unmanaged, IKernelArgs<T>
    {
        CudaTestEnvironment.RequireNvrtc();
        var want = FieldsInLaunchOrder<T>().Select(PtxType).ToArray();
        foreach (string entry in entries)
            Assert.True(want.SequenceEqual(ParamTypes(file, entry)),
                $"{typeof(T).Name} ({string.Join(", ", want)}) does not match {entry}({string.Join(", ", ParamTypes(file, entry))})");
    }

    private static string[] Each(Func<EdgeLlm.Gguf.GgmlType, bool> which, string format) =>
        CudaKernels.WeightTypes.Where(which).Select(t => string.Format(format, CudaKernels.Suffix(t))).ToArray();

    [NvrtcFact]
    public void EveryArgumentStructMatchesItsKernelsParameters()
    {
        Check<GetRowsArgs>("get_rows.cu", Each(_ => true, "get_rows_{0}"));
        Check<RmsNormArgs>("rmsnorm.cu", "rmsnorm_f32");
        Check<QuantizeArgs>("quantize.cu", "quantize_q8");
        Check<MatVecQ8Args>("matmul.cu", Each(CudaKernels.IsIntegerDot, "matvec_{0}_t1").Concat(Each(CudaKernels.IsIntegerDot, "matvec_{0}_t8")).ToArray());
        Check<MatVecFloatArgs>("matmul.cu", Each(t => !CudaKernels.IsIntegerDot(t), "matvec_{0}_t1").Concat(Each(t => !CudaKernels.IsIntegerDot(t), "matvec_{0}_t8")).ToArray());
        Check<MatVecPackedArgs>("matvec_packed.cu", CudaRepack.Types.SelectMany(t => new[] { $"matvec_packed_{CudaKernels.Suffix(t)}_t1", $"matvec_packed_{CudaKernels.Suffix(t)}_t8" }).ToArray());
        Check<MatVecResidualArgs>("matmul.cu", Each(_ => true, "matvec_{0}_res"));
        Check<MatVecPackedQkvArgs>("matvec_packed.cu", CudaRepack.Types.Select(t => $"matvec_packed_{CudaKernels.Suffix(t)}_qkv").ToArray());
        Check<MatVecPackedGluArgs>("matvec_packed.cu", CudaRepack.Types.Select(t => $"matvec_packed_{CudaKernels.Suffix(t)}_glu").ToArray());
        Check<GetRowsArgs>("matvec_packed.cu", CudaRepack.Types.Select(t => $"get_rows_packed_{CudaKernels.Suffix(t)}").ToArray());
        Check<RopeArgs>("rope.cu", "rope_f32");
        Check<StoreKvArgs>("elementwise.cu", "store_kv_f16");
        Check<BinaryArgs>("elementwise.cu", "swiglu_f32", "geglu_f32", "add_f32");
        Check<AddBiasArgs>("elementwise.cu", "add_bias_f32");
        Check<ScalarArgs>("elementwise.cu", "scale_f32", "softcap_f32");
        Check<AttentionArgs>("attention.cu", "attention_f16");
        Check<AttentionPrefillArgs>("attention_prefill.cu", "attention_prefill_f16", "attention_prefill_f32");
        Check<MatVecQ8Args>("gemm.cu", CudaKernels.GemmTypes.SelectMany(t => new[] { $"gemm_mma_{CudaKernels.Suffix(t)}", $"gemm_dp4a_{CudaKernels.Suffix(t)}" }).ToArray());
        Check<MatVecQ8Args>("gemm.cu", CudaKernels.GemmTypes.SelectMany(t => new[] { $"gemm_mma_{CudaKernels.Suffix(t)}_packed", $"gemm_dp4a_{CudaKernels.Suffix(t)}_packed" }).ToArray());
        Check<MatVecFloatArgs>("gemm.cu", CudaKernels.GemmFloatTypes.Select(t => $"gemm_{CudaKernels.Suffix(t)}").ToArray());
        Check<MatVecFloatArgs>("gemm.cu", CudaKernels.GemmHalfTypes.Select(t => $"gemm_mma_{CudaKernels.Suffix(t)}").ToArray());
        Check<AttentionSplitArgs>("attention.cu", "attention_split_f16");
        Check<AttentionCombineArgs>("attention.cu", "attention_combine_f32");
        Check<ArgMaxArgs>("sample.cu", "argmax_f32");
        Check<AddRmsNormQ8Args>("fused.cu", "add_rmsnorm_q8_f32");
        Check<RopeStoreQkvArgs>("fused.cu", "rope_store_qkv_f32");
        Check<GluSplitArgs>("fused.cu", "glu_split_q8_f32");
        Check<SplitRowsArgs>("fused.cu", "split_rows_f32");
        Check<AttentionFlashArgs>("attention.cu", "attention_flash_f16");
        Check<SampleArgs>("sample.cu", "sample_f32");
    }

    /// <summary>Every entry point of every kernel file is covered by the check above.</summary>
    [Fact]
    public void EveryEntryPointHasAnArgumentStruct()
    {
        var covered = new HashSet<string>(Each(_ => true, "get_rows_{0}").Concat(Each(_ => true, "matvec_{0}_t1")).Concat(Each(_ => true, "matvec_{0}_t8"))
            .Concat(Each(_ => true, "matvec_{0}_res")))
        {
            "rmsnorm_f32", "quantize_q8", "rope_f32", "store_kv_f16", "swiglu_f32", "geglu_f32", "add_f32", "add_bias_f32",
            "scale_f32", "softcap_f32", "attention_f16", "attention_split_f16", "attention_combine_f32", "argmax_f32",
            "attention_prefill_f16", "attention_prefill_f32",
            "add_rmsnorm_q8_f32", "rope_store_qkv_f32", "glu_split_q8_f32", "split_rows_f32", "attention_flash_f16",
            "sample_f32",
        };
        covered.UnionWith(CudaRepack.Types.SelectMany(t => new[]
        {
            $"matvec_packed_{CudaKernels.Suffix(t)}_t1", $"matvec_packed_{CudaKernels.Suffix(t)}_t8", $"matvec_packed_{CudaKernels.Suffix(t)}_qkv",
            $"matvec_packed_{CudaKernels.Suffix(t)}_glu", $"get_rows_packed_{CudaKernels.Suffix(t)}",
        }));
        foreach (var t in CudaKernels.GemmTypes)
        {
            covered.Add($"gemm_mma_{CudaKernels.Suffix(t)}");
            covered.Add($"gemm_dp4a_{CudaKernels.Suffix(t)}");
            covered.Add($"gemm_mma_{CudaKernels.Suffix(t)}_packed");
            covered.Add($"gemm_dp4a_{CudaKernels.Suffix(t)}_packed");
        }
        foreach (var t in CudaKernels.GemmFloatTypes) covered.Add($"gemm_{CudaKernels.Suffix(t)}");
        foreach (var t in CudaKernels.GemmHalfTypes) covered.Add($"gemm_mma_{CudaKernels.Suffix(t)}");
        var all = CudaKernels.EntryPoints.Values.SelectMany(v => v).ToHashSet();
        Assert.Empty(all.Except(covered));
    }
}
