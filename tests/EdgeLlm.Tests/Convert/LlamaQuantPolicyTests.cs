using System.Security.Cryptography;
using EdgeLlm.Convert;
using EdgeLlm.Gguf;
using EdgeLlm.ModelGen;
using EdgeLlm.Tests.Cli;
using static EdgeLlm.Convert.QuantPolicy;
using ModelFacts = EdgeLlm.Convert.QuantPolicy.ModelFacts;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// The converter's per-tensor types and bytes against what llama.cpp's llama-quantize (c392e50) wrote for the same
/// F32 models (tests/data/llama-quant-policy, see make.sh there): a 7B-shaped layer list (32 layers, n_gqa 1), a
/// 70B-shaped one (80 layers, n_gqa 8: llama.cpp's LLM_TYPE_70B) and a 4-layer model whose ffn_down rows (352)
/// are not whole 256-blocks. Each llama.cpp choice is also checked against the rule as read in
/// llama-quant.cpp (<see cref="Rule"/>, written here independently of <see cref="QuantPolicy"/>).
/// </summary>
public class LlamaQuantPolicyTests
{
    private sealed record Shape(string File, int Layers, int Heads, int KvHeads, int Dim, int Ffn, int Vocab);

    private static readonly Shape S7B = new("s7b", 32, 4, 4, 256, 512, 512);
    private static readonly Shape S70B = new("s70b", 80, 8, 1, 256, 512, 512);
    private static readonly Shape Sfb = new("sfb", 4, 4, 2, 256, 352, 512);

    private static Shape ByName(string file) => file switch { "s7b" => S7B, "s70b" => S70B, _ => Sfb };

    private static long[] Dims(Shape s, string name)
    {
        int kv = s.Dim / s.Heads * s.KvHeads;
        string suffix = name.StartsWith("blk.", StringComparison.Ordinal) ? name[(name.IndexOf('.', 4) + 1)..] : name;
        return suffix switch
        {
            "token_embd.weight" or "output.weight" => [s.Dim, s.Vocab],
            "attn_q.weight" or "attn_output.weight" => [s.Dim, s.Dim],
            "attn_k.weight" or "attn_v.weight" => [s.Dim, kv],
            "ffn_gate.weight" or "ffn_up.weight" => [s.Dim, s.Ffn],
            "ffn_down.weight" => [s.Ffn, s.Dim],
            _ => [s.Dim],
        };
    }

    /// <summary>(file types in the header, rows of tensor name + llama.cpp's type per file type).</summary>
    private static (string[] Types, List<(string Name, string[] Types)> Rows) Table(string file)
    {
        var lines = File.ReadAllLines(TestPaths.Data(Path.Combine("llama-quant-policy", file + ".types")));
        var header = lines[0].Split(' ')[1..];
        var rows = new List<(string, string[])>();
        foreach (var l in lines.Skip(1))
        {
            var parts = l.Split(' ');
            rows.Add((parts[0], parts[1..]));
        }
        return (header, rows);
    }

    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var f in new[] { "s7b", "s70b", "sfb" })
            foreach (var t in new[] { "Q4_K_M", "Q4_K_S", "Q5_K_S", "Q5_K_M", "Q6_K", "Q3_K_M", "IQ4_XS", "Q5_0", "Q8_0", "Q4_0" })
                d.Add(f, t);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryTensorGetsLlamaQuantizesType(string file, string fileType)
    {
        var s = ByName(file);
        var (types, rows) = Table(file);
        int col = Array.IndexOf(types, fileType);
        Assert.True(col >= 0);
        Assert.True(TryParse(fileType, out var output));
        var model = new ModelFacts(s.Layers, HasOutput: true, Is70B: s.Layers == 80 && s.KvHeads != s.Heads, Gqa: s.Heads / s.KvHeads);
        // Our converter writes in file order; llama.cpp's table is in its loader's order. Shuffle to show the
        // counters do not depend on the order we are given.
        var list = rows.Select(r => (r.Name, Dims(s, r.Name))).Reverse().ToList();
        var chosen = ChooseAll(output, list, model);
        var got = new Dictionary<string, GgmlType>();
        for (int i = 0; i < list.Count; i++) got[list[i].Name] = chosen[i].Type;
        int checkedCount = 0;
        foreach (var (name, llama) in rows)
        {
            string want = llama[col];
            Assert.True(want == GgmlTypes.Name(got[name]), $"{file} {fileType} {name}: llama.cpp {want}, converter {GgmlTypes.Name(got[name])}");
            Assert.True(want == GgmlTypes.Name(Rule(fileType, name, Dims(s, name)[0], s)), $"{file} {fileType} {name}: llama.cpp {want} disagrees with the rule as read");
            checkedCount++;
        }
        Assert.Equal(s.Layers * 9 + 3, checkedCount);
    }

    /// <summary>
    /// llama-quant.cpp's choices for a dense llama model without imatrix, restated: norms F32; output.weight Q6_K
    /// (Q8_0 under Q8_0, or when its rows are not whole blocks of the default type); attn_v of layer i (of n):
    /// Q3_K_M i &lt; 2 ? Q5_K : Q4_K; IQ4_XS Q5_K if n_gqa ≥ 4; Q4_K_M/Q5_K_M Q6_K if use_more_bits(i, n); Q4_K_S
    /// Q5_K if i &lt; 4; then 70B lifts Q3_K/Q4_K to Q5_K. ffn_down: Q3_K_M i &lt; n/16 ? Q5_K : Q4_K; Q4_K_M/Q5_K_M
    /// Q6_K if use_more_bits; IQ4_XS and Q4_K_S Q5_K if i &lt; n/8. attn_output: Q3_K_M Q4_K. Rows not a multiple of
    /// the block: Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, Q3_K/IQ4_XS→IQ4_NL.
    /// </summary>
    private static GgmlType Rule(string ft, string name, long nx, Shape s)
    {
        if (name.EndsWith("norm.weight", StringComparison.Ordinal)) return GgmlType.F32;
        var def = ft switch
        {
            "Q4_K_M" or "Q4_K_S" => GgmlType.Q4_K,
            "Q5_K_M" or "Q5_K_S" => GgmlType.Q5_K,
            "Q6_K" => GgmlType.Q6_K,
            "Q3_K_M" => GgmlType.Q3_K,
            "IQ4_XS" => GgmlType.IQ4_XS,
            "Q5_0" => GgmlType.Q5_0,
            "Q8_0" => GgmlType.Q8_0,
            _ => GgmlType.Q4_0,
        };
        if (name == "output.weight") return def == GgmlType.Q8_0 || nx % GgmlTypes.BlockSize(def) != 0 ? GgmlType.Q8_0 : GgmlType.Q6_K;
        int n = s.Layers;
        int i = name.StartsWith("blk.", StringComparison.Ordinal) ? int.Parse(name[4..name.IndexOf('.', 4)]) : -1;
        bool more = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
        var t = def;
        if (name.EndsWith("attn_v.weight", StringComparison.Ordinal))
        {
            if (ft == "Q3_K_M") t = i < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (ft == "IQ4_XS" && s.Heads / s.KvHeads >= 4) t = GgmlType.Q5_K;
            else if (ft is "Q4_K_M" or "Q5_K_M" && more) t = GgmlType.Q6_K;
            else if (ft == "Q4_K_S" && i < 4) t = GgmlType.Q5_K;
            if (n == 80 && s.Heads != s.KvHeads && t is GgmlType.Q3_K or GgmlType.Q4_K) t = GgmlType.Q5_K;
        }
        else if (name.EndsWith("ffn_down.weight", StringComparison.Ordinal))
        {
            if (ft == "Q3_K_M") t = i < n / 16 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (ft is "Q4_K_M" or "Q5_K_M" && more) t = GgmlType.Q6_K;
            else if (ft is "IQ4_XS" or "Q4_K_S" && i < n / 8) t = GgmlType.Q5_K;
        }
        else if (name.EndsWith("attn_output.weight", StringComparison.Ordinal) && ft == "Q3_K_M") t = GgmlType.Q4_K;
        if (nx % GgmlTypes.BlockSize(t) != 0)
            t = t switch
            {
                GgmlType.Q4_K => GgmlType.Q5_0,
                GgmlType.Q5_K => GgmlType.Q5_1,
                GgmlType.Q6_K => GgmlType.Q8_0,
                GgmlType.Q3_K or GgmlType.IQ4_XS => GgmlType.IQ4_NL,
                _ => t,
            };
        return t;
    }

    [Fact]
    public void TheTablesShowTheRulesTheyAreAbout()
    {
        // Spot checks that the llama.cpp files really contain the cases the rules talk about.
        var (t70, r70) = Table("s70b");
        string Get(List<(string Name, string[] Types)> rows, string[] types, string name, string ft) => rows.First(r => r.Name == name).Types[Array.IndexOf(types, ft)];
        Assert.Equal("Q5_K", Get(r70, t70, "blk.11.attn_v.weight", "Q4_K_M"));   // 70B: Q4_K attn_v -> Q5_K
        Assert.Equal("Q6_K", Get(r70, t70, "blk.12.attn_v.weight", "Q4_K_M"));   // use_more_bits(12, 80)
        Assert.Equal("Q5_K", Get(r70, t70, "blk.40.attn_v.weight", "Q3_K_M"));   // 70B lifts Q4_K
        Assert.Equal("Q5_K", Get(r70, t70, "blk.40.attn_v.weight", "IQ4_XS"));   // n_gqa 8 >= 4
        Assert.Equal("Q5_K", Get(r70, t70, "blk.4.ffn_down.weight", "Q3_K_M"));  // 4 < 80/16
        Assert.Equal("Q4_K", Get(r70, t70, "blk.5.ffn_down.weight", "Q3_K_M"));
        var (t7, r7) = Table("s7b");
        Assert.Equal("Q5_K", Get(r7, t7, "blk.1.attn_v.weight", "Q3_K_M"));
        Assert.Equal("Q4_K", Get(r7, t7, "blk.2.attn_v.weight", "Q3_K_M"));
        Assert.Equal("Q4_K", Get(r7, t7, "blk.9.attn_output.weight", "Q3_K_M"));
        Assert.Equal("IQ4_XS", Get(r7, t7, "blk.9.attn_v.weight", "IQ4_XS"));    // n_gqa 1
        var (tf, rf) = Table("sfb");
        Assert.Equal("Q5_0", Get(rf, tf, "blk.0.ffn_down.weight", "Q4_K_M"));    // 352 % 256: Q4_K -> Q5_0
        Assert.Equal("Q8_0", Get(rf, tf, "blk.3.ffn_down.weight", "Q4_K_M"));    // use_more_bits(3, 4): Q6_K -> Q8_0
        Assert.Equal("Q5_1", Get(rf, tf, "blk.2.ffn_down.weight", "Q5_K_S"));    // Q5_K -> Q5_1
        Assert.Equal("IQ4_NL", Get(rf, tf, "blk.2.ffn_down.weight", "IQ4_XS"));  // IQ4_XS -> IQ4_NL
        Assert.Equal("Q5_0", Get(rf, tf, "blk.2.ffn_down.weight", "Q3_K_M"));    // 2 >= 4/16: Q4_K -> Q5_0
    }

    public static TheoryData<string> ByteTypes() => new() { "Q4_K_M", "Q4_K_S", "Q5_K_S", "Q5_K_M", "Q6_K", "Q3_K_M", "IQ4_XS", "Q5_0", "Q8_0", "Q4_0" };

    /// <summary>
    /// The 4-layer model (regenerated here with the same edgellm-modelgen command as make.sh) converted by
    /// edgellm-convert: every tensor has llama-quantize's type and the same bytes (SHA-256), covering Q3_K, Q4_K,
    /// Q5_K, Q6_K, IQ4_XS, Q5_0, Q5_1, Q8_0, IQ4_NL and Q4_0 blocks; the file passes `edgellm info --verify`.
    /// </summary>
    [Theory]
    [MemberData(nameof(ByteTypes))]
    public void SmallModelBytesEqualLlamaQuantizes(string fileType)
    {
        string input = SmallModel();
        string output = ConvertTestKit.ConvertWithCli(input, fileType.ToLowerInvariant());
        var expected = File.ReadAllLines(TestPaths.Data(Path.Combine("llama-quant-policy", "sfb.sha256")))
            .Select(l => l.Split(' ')).Where(p => p[1] == fileType).ToList();
        Assert.Equal(39, expected.Count);
        using (var f = GgufFile.Open(output))
        {
            foreach (var p in expected)
            {
                var info = f.FindTensor(p[0]);
                Assert.NotNull(info);
                Assert.True(p[2] == GgmlTypes.Name(info!.Type), $"{fileType} {p[0]}: llama.cpp {p[2]}, converter {GgmlTypes.Name(info.Type)}");
                string hash = System.Convert.ToHexStringLower(SHA256.HashData(ConvertTestKit.TensorBytes(f, p[0])))[..16];
                Assert.True(p[3] == hash, $"{fileType} {p[0]} ({p[2]}): bytes differ from llama-quantize's");
            }
            Assert.Equal(expected.Count, f.Tensors.Count);
        }
        var verify = CliRunner.InProcess("info", "-m", output, "--verify");
        Assert.True(verify.ExitCode == 0, verify.Stdout + verify.Stderr);
        Assert.Contains("verify: all 39 tensors OK", verify.Stdout);
    }

    private static readonly Lazy<string> SmallModelPath = new(() =>
    {
        string path = TestPaths.TempFile("sfb-f32.gguf");
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = ModelGenCli.Execute(["-o", path, "--dim", "256", "--layers", "4", "--heads", "4", "--kv-heads", "2", "--ffn", "352",
            "--vocab", "512", "--type", "f32", "--seed", "3", "-q"], o, e);
        Assert.True(rc == 0, e.ToString());
        return path;
    });

    private static string SmallModel() => SmallModelPath.Value;
}
