using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// The test oracle: a plain transformer forward pass, one token at a time, with every weight dequantized by
/// <see cref="QuantRef.DequantizeRow"/> and all arithmetic in double. It reads the hyperparameters from the file
/// itself (not through LlamaConfig) and shares no code with the engine's forward pass. The families follow the
/// published model definitions (Hugging Face transformers' modeling_llama / qwen2 / qwen3 / phi3 / gemma / gemma2 /
/// gemma3), written from them directly: Qwen 2's q/k/v biases; Qwen 3's and Gemma 3's per-head q/k RMSNorm;
/// rotate_half RoPE (NEOX) for every family but llama (whose GGUF rows are permuted to interleaved pairs by the
/// converter); Phi-3's fused qkv and gate_up projections; Gemma's sqrt(hidden) embedding normalizer, (1 + w) norms
/// (the GGUF stores 1 + w, so w = stored − 1), gelu_pytorch_tanh MLP, query_pre_attn_scalar^-0.5 scaling
/// (= head_dim here), Gemma 2/3's post-attention and post-feedforward norms, attention and final logit softcapping
/// (Gemma 2), and "sliding_attention" layers ((i + 1) % pattern != 0, pattern 2 for Gemma 2 and 6 for Gemma 3)
/// that see the last sliding_window positions, Gemma 3's local layers rotating with base 10000 unscaled.
/// With <c>quantizeActivations</c>, the input of every matrix product with block-quantized weights is first
/// rounded through the 8-bit activation format the engine's integer kernels use (Q8_0 blocks for Q4_0/Q8_0
/// weights, Q8_K for Q4_K/Q6_K, as llama.cpp does), so the oracle computes the engine's numerical model in
/// double; without it the oracle is the exact float64 model.
/// </summary>
internal sealed class ReferenceTransformer
{
    private readonly string _arch;
    private readonly bool _gemma, _neox;
    private readonly int _dim, _layers, _heads, _kvHeads, _headDim, _ffn, _vocab, _ropeDims, _slidingWindow, _swaPattern;
    private readonly double _eps, _base, _scale, _attnSoftcap, _finalSoftcap, _queryScale, _ropeMagnitude;
    private readonly double[]? _freqFactors;
    private readonly double[][] _tokenEmbd, _output;
    private readonly double[] _outputNorm;
    private readonly Layer[] _layer;
    private readonly List<double[]>[] _keys, _values;
    private readonly bool _quantizeActivations;
    private readonly Dictionary<double[][], GgmlType> _types = new(ReferenceEqualityComparer.Instance);

    private sealed class Layer
    {
        public required double[] AttnNorm, FfnNorm;
        public required double[][] Wq, Wk, Wv, Wo, Gate, Up, Down;
        public double[]? Bq, Bk, Bv, QNorm, KNorm, PostAttnNorm, PostFfnNorm;
    }

    public int Vocab => _vocab;

    /// <summary>The last token's hidden state after the final norm (what the output projection reads), from the last <see cref="Forward"/>.</summary>
    public double[] LastHidden { get; private set; } = [];

    /// <param name="contextSize">
    /// the context the engine runs with: Phi-3 LongRoPE uses its long factors when it exceeds
    /// rope.scaling.original_context_length (llama.cpp's choice per context; transformers chooses per sequence length).
    /// </param>
    public ReferenceTransformer(string path, bool quantizeActivations = false, int contextSize = 0)
    {
        _quantizeActivations = quantizeActivations;
        using var f = GgufFile.Open(path);
        _arch = f.GetString("general.architecture")!;
        if (_arch is not ("llama" or "qwen2" or "qwen3" or "phi3" or "gemma" or "gemma2" or "gemma3"))
            throw new NotSupportedException("oracle has no definition of " + _arch);
        string a = _arch + ".";
        _gemma = _arch.StartsWith("gemma", StringComparison.Ordinal);
        _neox = _arch != "llama";
        _dim = (int)f.RequireInt(a + "embedding_length");
        _layers = (int)f.RequireInt(a + "block_count");
        _heads = (int)f.RequireInt(a + "attention.head_count");
        _kvHeads = (int)(f.GetInt(a + "attention.head_count_kv") ?? _heads);
        _headDim = (int)(f.GetInt(a + "attention.key_length") ?? _dim / _heads);
        _ffn = (int)f.RequireInt(a + "feed_forward_length");
        _ropeDims = (int)(f.GetInt(a + "rope.dimension_count") ?? _headDim);
        _eps = f.GetDouble(a + "attention.layer_norm_rms_epsilon")!.Value;
        _base = f.GetDouble(a + "rope.freq_base") ?? 10000.0;
        _scale = f.GetDouble(a + "rope.scaling.factor") ?? 1.0;
        // Gemma 2/3: scaling = query_pre_attn_scalar ** -0.5 with query_pre_attn_scalar = head_dim (all but 27B).
        _queryScale = 1 / Math.Sqrt(_headDim);
        _attnSoftcap = _arch == "gemma2" ? f.GetDouble(a + "attn_logit_softcapping") ?? 50.0 : 0;
        _finalSoftcap = _arch == "gemma2" ? f.GetDouble(a + "final_logit_softcapping") ?? 30.0 : 0;
        _swaPattern = _arch switch { "gemma2" => 2, "gemma3" => 6, _ => 0 };
        _slidingWindow = _swaPattern > 0 ? (int)(f.GetInt(a + "attention.sliding_window") ?? 4096) : 0;
        _tokenEmbd = Matrix(f, "token_embd.weight");
        _vocab = _tokenEmbd.Length;
        _output = f.FindTensor("output.weight") is null ? _tokenEmbd : Matrix(f, "output.weight");
        _outputNorm = Norm(f, "output_norm.weight");
        _freqFactors = f.FindTensor("rope_freqs.weight") is null ? null : Matrix(f, "rope_freqs.weight")[0];
        // Phi-3 LongRoPE (Phi3LongRoPEScaledRotaryEmbedding): inv_freq = 1 / (ext_factor · base^(2i/dim)) with the long or
        // short ext factors, cos and sin multiplied by the scaling factor the converter stored as rope.scaling.attn_factor.
        _ropeMagnitude = 1.0;
        if (_arch == "phi3" && f.FindTensor("rope_factors_short.weight") is not null)
        {
            long original = f.GetInt(a + "rope.scaling.original_context_length") ?? f.RequireInt(a + "context_length");
            _freqFactors = Matrix(f, contextSize > original ? "rope_factors_long.weight" : "rope_factors_short.weight")[0];
            _ropeMagnitude = f.GetDouble(a + "rope.scaling.attn_factor") ?? 1.0;
        }
        _layer = new Layer[_layers];
        _keys = new List<double[]>[_layers];
        _values = new List<double[]>[_layers];
        int qDim = _heads * _headDim, kvDim = _kvHeads * _headDim;
        for (int l = 0; l < _layers; l++)
        {
            string p = $"blk.{l}.";
            double[][] wq, wk, wv, gate, up;
            if (_arch == "phi3")
            {
                // qkv_proj rows are q | k | v; gate_up_proj rows are gate | up.
                var qkv = Matrix(f, p + "attn_qkv.weight");
                wq = qkv[..qDim];
                wk = qkv[qDim..(qDim + kvDim)];
                wv = qkv[(qDim + kvDim)..];
                var gu = Matrix(f, p + "ffn_up.weight");
                gate = gu[.._ffn];
                up = gu[_ffn..];
            }
            else
            {
                wq = Matrix(f, p + "attn_q.weight");
                wk = Matrix(f, p + "attn_k.weight");
                wv = Matrix(f, p + "attn_v.weight");
                gate = Matrix(f, p + "ffn_gate.weight");
                up = Matrix(f, p + "ffn_up.weight");
            }
            bool post = _arch is "gemma2" or "gemma3", qk = _arch is "qwen3" or "gemma3";
            _layer[l] = new Layer
            {
                AttnNorm = Norm(f, p + "attn_norm.weight"),
                FfnNorm = Norm(f, p + "ffn_norm.weight"),
                Wq = wq,
                Wk = wk,
                Wv = wv,
                Wo = Matrix(f, p + "attn_output.weight"),
                Gate = gate,
                Up = up,
                Down = Matrix(f, p + "ffn_down.weight"),
                Bq = _arch == "qwen2" ? Matrix(f, p + "attn_q.bias")[0] : null,
                Bk = _arch == "qwen2" ? Matrix(f, p + "attn_k.bias")[0] : null,
                Bv = _arch == "qwen2" ? Matrix(f, p + "attn_v.bias")[0] : null,
                QNorm = qk ? Norm(f, p + "attn_q_norm.weight") : null,
                KNorm = qk ? Norm(f, p + "attn_k_norm.weight") : null,
                PostAttnNorm = post ? Norm(f, p + "post_attention_norm.weight") : null,
                PostFfnNorm = post ? Norm(f, p + "post_ffw_norm.weight") : null,
            };
            _keys[l] = new();
            _values[l] = new();
        }
    }

    /// <summary>
    /// An RMSNorm weight as the model definition multiplies by it. Gemma's modules compute x̂ · (1 + w); llama.cpp's
    /// converter stores 1 + w in the GGUF, so the stored vector is that factor as it is, for every family.
    /// </summary>
    private double[] Norm(GgufFile f, string name) => Matrix(f, name)[0];

    /// <summary>Runs the next token (its position is the number of tokens run so far) and returns its logits.</summary>
    public double[] Forward(int token)
    {
        int pos = _keys[0].Count;
        double[] x = (double[])_tokenEmbd[token].Clone();
        if (_gemma)
        {
            double normalizer = Math.Sqrt(_dim);
            for (int i = 0; i < x.Length; i++) x[i] *= normalizer;
        }
        int group = _heads / _kvHeads;
        for (int l = 0; l < _layers; l++)
        {
            var w = _layer[l];
            bool sliding = _swaPattern > 0 && (l + 1) % _swaPattern != 0;
            // Gemma 3's sliding layers rotate with rope_local_base_freq = 10000 and no scaling.
            double ropeBase = sliding && _arch == "gemma3" ? 10000.0 : _base;
            double ropeScale = sliding && _arch == "gemma3" ? 1.0 : _scale;

            double[] xb = RmsNorm(x, w.AttnNorm);
            double[] q = MatVec(w.Wq, xb), k = MatVec(w.Wk, xb), v = MatVec(w.Wv, xb);
            if (w.Bq is not null) { Accumulate(q, w.Bq); Accumulate(k, w.Bk!); Accumulate(v, w.Bv!); }
            for (int h = 0; h < _heads; h++)
            {
                if (w.QNorm is not null) HeadNorm(q, h * _headDim, w.QNorm);
                Rope(q, h * _headDim, pos, ropeBase, ropeScale);
            }
            for (int h = 0; h < _kvHeads; h++)
            {
                if (w.KNorm is not null) HeadNorm(k, h * _headDim, w.KNorm);
                Rope(k, h * _headDim, pos, ropeBase, ropeScale);
            }
            _keys[l].Add(k);
            _values[l].Add(v);

            int first = sliding ? Math.Max(0, pos - _slidingWindow + 1) : 0; // visible iff pos - j < window
            double[] att = new double[_heads * _headDim];
            for (int h = 0; h < _heads; h++)
            {
                int kvo = h / group * _headDim;
                double[] s = new double[pos + 1];
                double max = double.NegativeInfinity;
                for (int j = first; j <= pos; j++)
                {
                    double d = 0;
                    for (int i = 0; i < _headDim; i++) d += q[h * _headDim + i] * _keys[l][j][kvo + i];
                    s[j] = d * _queryScale;
                    if (_attnSoftcap > 0) s[j] = Math.Tanh(s[j] / _attnSoftcap) * _attnSoftcap;
                    max = Math.Max(max, s[j]);
                }
                double sum = 0;
                for (int j = first; j <= pos; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int j = first; j <= pos; j++)
                    for (int i = 0; i < _headDim; i++) att[h * _headDim + i] += s[j] / sum * _values[l][j][kvo + i];
            }
            double[] o = MatVec(w.Wo, att);
            Accumulate(x, w.PostAttnNorm is null ? o : RmsNorm(o, w.PostAttnNorm));

            xb = RmsNorm(x, w.FfnNorm);
            double[] g = MatVec(w.Gate, xb), u = MatVec(w.Up, xb);
            for (int i = 0; i < _ffn; i++) g[i] = (_gemma ? GeluTanh(g[i]) : g[i] / (1 + Math.Exp(-g[i]))) * u[i];
            double[] down = MatVec(w.Down, g);
            Accumulate(x, w.PostFfnNorm is null ? down : RmsNorm(down, w.PostFfnNorm));
        }
        LastHidden = RmsNorm(x, _outputNorm);
        double[] logits = MatVec(_output, LastHidden);
        if (_finalSoftcap > 0)
            for (int i = 0; i < logits.Length; i++) logits[i] = Math.Tanh(logits[i] / _finalSoftcap) * _finalSoftcap;
        return logits;
    }

    /// <summary>gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))).</summary>
    private static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>q_norm / k_norm: RMSNorm over one head's head_dim values, in place.</summary>
    private void HeadNorm(double[] v, int off, double[] w)
    {
        double ss = 0;
        for (int i = 0; i < _headDim; i++) ss += v[off + i] * v[off + i];
        double r = 1 / Math.Sqrt(ss / _headDim + _eps);
        for (int i = 0; i < _headDim; i++) v[off + i] = v[off + i] * r * w[i];
    }

    /// <summary>
    /// Rotation of one head at position pos by theta_i = (pos / scale) · base^(−2i/dims) / factor_i: pairs (2i, 2i+1)
    /// for llama's permuted GGUF rows, rotate_half pairs (i, i + dims/2) for the others.
    /// </summary>
    private void Rope(double[] v, int off, int pos, double ropeBase, double ropeScale)
    {
        int half = _ropeDims / 2;
        for (int i = 0; i < half; i++)
        {
            double theta = pos / ropeScale * Math.Pow(ropeBase, -2.0 * i / _ropeDims);
            if (_freqFactors is not null) theta /= _freqFactors[i];
            double c = Math.Cos(theta) * _ropeMagnitude, s = Math.Sin(theta) * _ropeMagnitude;
            int i0 = _neox ? off + i : off + 2 * i, i1 = _neox ? off + i + half : off + 2 * i + 1;
            double a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
        }
    }

    /// <summary>Rows of a tensor, dequantized to double.</summary>
    private unsafe double[][] Matrix(GgufFile f, string name)
    {
        var t = f.GetTensor(name) ?? throw new InvalidOperationException("missing " + name);
        var rows = new double[t.Rows][];
        var buf = new float[t.Ne0];
        for (long r = 0; r < t.Rows; r++)
        {
            QuantRef.DequantizeRow(t.Type, new ReadOnlySpan<byte>(RowPtr(t, r), (int)t.RowBytes), buf);
            rows[r] = Array.ConvertAll(buf, x => (double)x);
        }
        _types[rows] = t.Type;
        return rows;
    }

    private static unsafe byte* RowPtr(TensorView t, long r) => t.Row(r);

    private double[] RmsNorm(double[] x, double[] w)
    {
        double ss = 0;
        foreach (double e in x) ss += e * e;
        double r = 1 / Math.Sqrt(ss / x.Length + _eps);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++) y[i] = x[i] * r * w[i];
        return y;
    }

    private double[] MatVec(double[][] w, double[] x)
    {
        if (_quantizeActivations && _types.TryGetValue(w, out var type) && type is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q6_K)
            x = RoundThroughActivationFormat(type, x);
        var y = new double[w.Length];
        for (int r = 0; r < w.Length; r++)
        {
            double s = 0;
            var row = w[r];
            for (int i = 0; i < x.Length; i++) s += row[i] * x[i];
            y[r] = s;
        }
        return y;
    }

    private static void Accumulate(double[] x, double[] y)
    {
        for (int i = 0; i < x.Length; i++) x[i] += y[i];
    }

    /// <summary>x (as float32, which is what the engine holds) quantized to the activation blocks and back.</summary>
    private static unsafe double[] RoundThroughActivationFormat(GgmlType weightType, double[] x)
    {
        var f = Array.ConvertAll(x, v => (float)v);
        var back = new float[f.Length];
        if (weightType is GgmlType.Q4_0 or GgmlType.Q8_0)
        {
            QuantRef.DequantizeRow(GgmlType.Q8_0, QuantRef.QuantizeRow(GgmlType.Q8_0, f), back);
        }
        else
        {
            var q = new byte[f.Length / 256 * EdgeLlm.Backends.Cpu.Kernels.ActivationQuant.Q8_KBlockBytes];
            fixed (float* pf = f) fixed (byte* pq = q) fixed (float* pb = back)
            {
                EdgeLlm.Backends.Cpu.Kernels.ActivationQuant.QuantizeQ8_K(pf, pq, f.Length);
                EdgeLlm.Backends.Cpu.Kernels.ActivationQuant.DequantizeQ8_K(pq, pb, f.Length);
            }
        }
        return Array.ConvertAll(back, v => (double)v);
    }
}
