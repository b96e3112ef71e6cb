namespace EdgeLlm.Tests.Convert;

/// <summary>
/// A float64 forward pass computed straight from the Hugging Face tensors of a <see cref="HfFamilyCheckpoint"/>,
/// following transformers' modeling_llama / mistral / qwen2 / qwen3 / phi3 / gemma / gemma2 / gemma3: HF's own
/// rotate-half RoPE on HF-ordered q/k rows (so it shares nothing with the converter's permutation), RMSNorm with
/// weight w (Gemma: 1 + w), Llama-3 rope scaling of the inverse frequencies, Phi-3 LongRoPE (short factors
/// below original_max_position_embeddings, cos/sin scaled by the attention factor), partial rotary dimensions,
/// Gemma's sqrt(hidden) embedding scale, GELU(tanh), query_pre_attn_scalar, attention and final softcapping,
/// sliding windows (Gemma 2 on even layers, Gemma 3 on all but every sliding_window_pattern-th layer with
/// rope_local_base_freq) and tied heads.
/// </summary>
internal sealed class HfReferenceModel(HfFamilyCheckpoint ck)
{
    private double[] W(string name) => Array.ConvertAll(ck.Tensors[name].Data, x => (double)x);

    private string Arch => ck.GgufArch;

    /// <summary>Logits (vocab entries) at every position of the sequence.</summary>
    public double[][] Forward(int[] tokens)
    {
        var c = ck.Config;
        int dim = ck.Dim, heads = ck.Heads, kvHeads = ck.KvHeads, hd = ck.HeadDim, ffn = ck.Ffn, vocab = ck.Vocab, n = tokens.Length;
        double eps = (double)c["rms_norm_eps"]!;
        bool gemma = ck.IsGemma;
        var emb = W("model.embed_tokens.weight");
        var x = new double[n][];
        for (int t = 0; t < n; t++)
        {
            x[t] = new double[dim];
            for (int i = 0; i < dim; i++) x[t][i] = emb[(long)tokens[t] * dim + i] * (gemma ? Math.Sqrt(dim) : 1);
        }
        for (int l = 0; l < ck.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            var (window, invFreq, ropeScale) = LayerRope(l);
            int rotDims = invFreq.Length * 2;
            var q = new double[n][]; var k = new double[n][]; var v = new double[n][];
            for (int t = 0; t < n; t++)
            {
                var h = RmsNorm(x[t], W(p + "input_layernorm.weight"), eps, gemma);
                if (Arch == "phi3")
                {
                    var qkv = MatVec(W(p + "self_attn.qkv_proj.weight"), h, heads * hd + 2 * kvHeads * hd, dim);
                    q[t] = qkv[..(heads * hd)];
                    k[t] = qkv[(heads * hd)..(heads * hd + kvHeads * hd)];
                    v[t] = qkv[(heads * hd + kvHeads * hd)..];
                }
                else
                {
                    q[t] = MatVec(W(p + "self_attn.q_proj.weight"), h, heads * hd, dim);
                    k[t] = MatVec(W(p + "self_attn.k_proj.weight"), h, kvHeads * hd, dim);
                    v[t] = MatVec(W(p + "self_attn.v_proj.weight"), h, kvHeads * hd, dim);
                    if (Arch == "qwen2")
                    {
                        Add(q[t], W(p + "self_attn.q_proj.bias"));
                        Add(k[t], W(p + "self_attn.k_proj.bias"));
                        Add(v[t], W(p + "self_attn.v_proj.bias"));
                    }
                }
                if (Arch is "qwen3" or "gemma3")
                {
                    HeadNorm(q[t], heads, hd, W(p + "self_attn.q_norm.weight"), eps, gemma);
                    HeadNorm(k[t], kvHeads, hd, W(p + "self_attn.k_norm.weight"), eps, gemma);
                }
                RotateHalf(q[t], heads, hd, rotDims, invFreq, ropeScale, t);
                RotateHalf(k[t], kvHeads, hd, rotDims, invFreq, ropeScale, t);
            }
            double scale = c["query_pre_attn_scalar"] is { } qs ? 1 / Math.Sqrt(double.Parse(qs.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)) : 1 / Math.Sqrt(hd);
            double? softcap = Arch == "gemma2" ? (double)c["attn_logit_softcapping"]! : null;
            var wo = W(p + "self_attn.o_proj.weight");
            for (int t = 0; t < n; t++)
            {
                var att = new double[heads * hd];
                for (int hh = 0; hh < heads; hh++)
                {
                    int g = hh / (heads / kvHeads);
                    var s = new double[t + 1];
                    double max = double.NegativeInfinity;
                    for (int u = 0; u <= t; u++)
                    {
                        if (window is int win && t - u >= win) { s[u] = double.NegativeInfinity; continue; }
                        double d = 0;
                        for (int i = 0; i < hd; i++) d += q[t][hh * hd + i] * k[u][g * hd + i];
                        d *= scale;
                        if (softcap is double cap) d = Math.Tanh(d / cap) * cap;
                        s[u] = d;
                        max = Math.Max(max, d);
                    }
                    double sum = 0;
                    for (int u = 0; u <= t; u++) { s[u] = Math.Exp(s[u] - max); sum += s[u]; }
                    for (int u = 0; u <= t; u++)
                        for (int i = 0; i < hd; i++) att[hh * hd + i] += s[u] / sum * v[u][g * hd + i];
                }
                var o = MatVec(wo, att, dim, heads * hd);
                if (Arch is "gemma2" or "gemma3") o = RmsNorm(o, W(p + "post_attention_layernorm.weight"), eps, gemma);
                Add(x[t], o);

                var h2 = RmsNorm(x[t], W(p + (Arch is "gemma2" or "gemma3" ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")), eps, gemma);
                double[] gate, up;
                if (Arch == "phi3")
                {
                    var gu = MatVec(W(p + "mlp.gate_up_proj.weight"), h2, 2 * ffn, dim);
                    gate = gu[..ffn];
                    up = gu[ffn..];
                }
                else
                {
                    gate = MatVec(W(p + "mlp.gate_proj.weight"), h2, ffn, dim);
                    up = MatVec(W(p + "mlp.up_proj.weight"), h2, ffn, dim);
                }
                for (int i = 0; i < ffn; i++) gate[i] = (gemma ? GeluTanh(gate[i]) : Silu(gate[i])) * up[i];
                var down = MatVec(W(p + "mlp.down_proj.weight"), gate, dim, ffn);
                if (Arch is "gemma2" or "gemma3") down = RmsNorm(down, W(p + "post_feedforward_layernorm.weight"), eps, gemma);
                Add(x[t], down);
            }
        }
        var head = ck.Tied ? emb : W("lm_head.weight");
        double? finalCap = c["final_logit_softcapping"] is { } fc ? (double)fc : null;
        var logits = new double[n][];
        for (int t = 0; t < n; t++)
        {
            var h = RmsNorm(x[t], W("model.norm.weight"), eps, gemma);
            logits[t] = MatVec(head, h, vocab, dim);
            if (finalCap is double cap)
                for (int i = 0; i < vocab; i++) logits[t][i] = Math.Tanh(logits[t][i] / cap) * cap;
        }
        return logits;
    }

    /// <summary>The layer's sliding window (null: full attention), inverse frequencies and cos/sin scale.</summary>
    private (int? Window, double[] InvFreq, double Scale) LayerRope(int layer)
    {
        var c = ck.Config;
        double theta = (double)c["rope_theta"]!;
        int hd = ck.HeadDim;
        int? window = null;
        switch (Arch)
        {
            case "gemma2":
                if (layer % 2 == 0) window = (int)c["sliding_window"]!;
                break;
            case "gemma3":
                if ((layer + 1) % (int)c["sliding_window_pattern"]! != 0)
                {
                    window = (int)c["sliding_window"]!;
                    theta = (double)c["rope_local_base_freq"]!;
                }
                break;
            case "phi3":
                window = (int)c["sliding_window"]!;
                break;
        }
        int rot = Arch == "phi3" ? (int)((double)c["partial_rotary_factor"]! * hd) : hd;
        var inv = new double[rot / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1 / Math.Pow(theta, 2.0 * i / rot);
        double scale = 1;
        if (ck.Family == "llama3")
        {
            var rs = c["rope_scaling"]!;
            double factor = (double)rs["factor"]!, lo = (double)rs["low_freq_factor"]!, hi = (double)rs["high_freq_factor"]!;
            double old = (int)rs["original_max_position_embeddings"]!;
            for (int i = 0; i < inv.Length; i++)
            {
                double wavelen = 2 * Math.PI / inv[i];
                if (wavelen > old / lo) inv[i] /= factor;
                else if (wavelen >= old / hi)
                {
                    double smooth = (old / wavelen - lo) / (hi - lo);
                    inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
                }
            }
        }
        if (Arch == "phi3")
        {
            // Sequences here are shorter than original_max_position_embeddings: the short factors apply.
            var rs = c["rope_scaling"]!;
            var sf = rs["short_factor"]!.AsArray();
            for (int i = 0; i < inv.Length; i++) inv[i] /= (double)sf[i]!;
            double orig = (int)c["original_max_position_embeddings"]!, factor = (int)c["max_position_embeddings"]! / orig;
            scale = factor <= 1 ? 1 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(orig));
        }
        return (window, inv, scale);
    }

    /// <summary>HF apply_rotary_pos_emb on the first rot dims of each head: x * cos + rotate_half(x) * sin.</summary>
    private static void RotateHalf(double[] x, int heads, int hd, int rot, double[] inv, double scale, int pos)
    {
        int half = rot / 2;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
            {
                double a = pos * inv[i], cos = Math.Cos(a) * scale, sin = Math.Sin(a) * scale;
                double x0 = x[h * hd + i], x1 = x[h * hd + half + i];
                x[h * hd + i] = x0 * cos - x1 * sin;
                x[h * hd + half + i] = x1 * cos + x0 * sin;
            }
    }

    private static double[] RmsNorm(double[] x, double[] w, double eps, bool plusOne)
    {
        double ss = 0;
        foreach (double v in x) ss += v * v;
        double r = 1 / Math.Sqrt(ss / x.Length + eps);
        var o = new double[x.Length];
        for (int i = 0; i < x.Length; i++) o[i] = x[i] * r * (plusOne ? 1 + w[i] : w[i]);
        return o;
    }

    private static void HeadNorm(double[] x, int heads, int hd, double[] w, double eps, bool plusOne)
    {
        for (int h = 0; h < heads; h++)
        {
            var n = RmsNorm(x[(h * hd)..((h + 1) * hd)], w, eps, plusOne);
            Array.Copy(n, 0, x, h * hd, hd);
        }
    }

    private static double[] MatVec(double[] w, double[] x, int rows, int cols)
    {
        var o = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int i = 0; i < cols; i++) s += w[(long)r * cols + i] * x[i];
            o[r] = s;
        }
        return o;
    }

    private static void Add(double[] a, double[] b)
    {
        for (int i = 0; i < a.Length; i++) a[i] += b[i];
    }

    private static double Silu(double x) => x / (1 + Math.Exp(-x));

    private static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}
