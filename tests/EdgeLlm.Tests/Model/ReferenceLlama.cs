using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// The test oracle: a plain Llama forward pass, one token at a time, with every weight dequantized by
/// <see cref="QuantRef.DequantizeRow"/> and all arithmetic in double. It reads the hyperparameters from
/// the file itself (not through LlamaConfig) and shares no code with the engine's forward pass.
/// With <c>quantizeActivations</c>, the input of every matrix product with block-quantized weights is first
/// rounded through the 8-bit activation format the engine's integer kernels use (Q8_0 blocks for Q4_0/Q8_0
/// weights, Q8_K for Q4_K/Q6_K, as llama.cpp does), so the oracle computes the engine's numerical model in
/// double; without it the oracle is the exact float64 model.
/// </summary>
internal sealed class ReferenceLlama
{
    private readonly int _dim, _layers, _heads, _kvHeads, _headDim, _ffn, _vocab, _ropeDims;
    private readonly double _eps, _base, _scale;
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
    }

    public int Vocab => _vocab;

    public ReferenceLlama(string path, bool quantizeActivations = false)
    {
        _quantizeActivations = quantizeActivations;
        using var f = GgufFile.Open(path);
        _dim = (int)f.RequireInt("llama.embedding_length");
        _layers = (int)f.RequireInt("llama.block_count");
        _heads = (int)f.RequireInt("llama.attention.head_count");
        _kvHeads = (int)(f.GetInt("llama.attention.head_count_kv") ?? _heads);
        _headDim = _dim / _heads;
        _ffn = (int)f.RequireInt("llama.feed_forward_length");
        _ropeDims = (int)(f.GetInt("llama.rope.dimension_count") ?? _headDim);
        _eps = f.GetDouble("llama.attention.layer_norm_rms_epsilon")!.Value;
        _base = f.GetDouble("llama.rope.freq_base") ?? 10000.0;
        _scale = f.GetDouble("llama.rope.scaling.factor") ?? 1.0;
        _tokenEmbd = Matrix(f, "token_embd.weight");
        _vocab = _tokenEmbd.Length;
        _output = f.FindTensor("output.weight") is null ? _tokenEmbd : Matrix(f, "output.weight");
        _outputNorm = Matrix(f, "output_norm.weight")[0];
        _freqFactors = f.FindTensor("rope_freqs.weight") is null ? null : Matrix(f, "rope_freqs.weight")[0];
        _layer = new Layer[_layers];
        _keys = new List<double[]>[_layers];
        _values = new List<double[]>[_layers];
        for (int l = 0; l < _layers; l++)
        {
            string p = $"blk.{l}.";
            _layer[l] = new Layer
            {
                AttnNorm = Matrix(f, p + "attn_norm.weight")[0],
                FfnNorm = Matrix(f, p + "ffn_norm.weight")[0],
                Wq = Matrix(f, p + "attn_q.weight"),
                Wk = Matrix(f, p + "attn_k.weight"),
                Wv = Matrix(f, p + "attn_v.weight"),
                Wo = Matrix(f, p + "attn_output.weight"),
                Gate = Matrix(f, p + "ffn_gate.weight"),
                Up = Matrix(f, p + "ffn_up.weight"),
                Down = Matrix(f, p + "ffn_down.weight"),
            };
            _keys[l] = new();
            _values[l] = new();
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

    /// <summary>Runs the next token (its position is the number of tokens run so far) and returns its logits.</summary>
    public double[] Forward(int token)
    {
        int pos = _keys[0].Count;
        double[] x = (double[])_tokenEmbd[token].Clone();
        int group = _heads / _kvHeads;
        for (int l = 0; l < _layers; l++)
        {
            var w = _layer[l];
            double[] xb = RmsNorm(x, w.AttnNorm);
            double[] q = MatVec(w.Wq, xb), k = MatVec(w.Wk, xb), v = MatVec(w.Wv, xb);
            for (int h = 0; h < _heads; h++) Rope(q, h * _headDim, pos);
            for (int h = 0; h < _kvHeads; h++) Rope(k, h * _headDim, pos);
            _keys[l].Add(k);
            _values[l].Add(v);

            double[] att = new double[_dim];
            for (int h = 0; h < _heads; h++)
            {
                int kvo = h / group * _headDim;
                double[] s = new double[pos + 1];
                double max = double.NegativeInfinity;
                for (int j = 0; j <= pos; j++)
                {
                    double d = 0;
                    for (int i = 0; i < _headDim; i++) d += q[h * _headDim + i] * _keys[l][j][kvo + i];
                    s[j] = d / Math.Sqrt(_headDim);
                    max = Math.Max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j <= pos; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int j = 0; j <= pos; j++)
                    for (int i = 0; i < _headDim; i++) att[h * _headDim + i] += s[j] / sum * _values[l][j][kvo + i];
            }
            Accumulate(x, MatVec(w.Wo, att));

            xb = RmsNorm(x, w.FfnNorm);
            double[] g = MatVec(w.Gate, xb), u = MatVec(w.Up, xb);
            for (int i = 0; i < _ffn; i++) g[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
            Accumulate(x, MatVec(w.Down, g));
        }
        return MatVec(_output, RmsNorm(x, _outputNorm));
    }

    private void Rope(double[] v, int off, int pos)
    {
        for (int i = 0; i < _ropeDims / 2; i++)
        {
            double theta = pos / _scale * Math.Pow(_base, -2.0 * i / _ropeDims);
            if (_freqFactors is not null) theta /= _freqFactors[i];
            double c = Math.Cos(theta), s = Math.Sin(theta);
            double a = v[off + 2 * i], b = v[off + 2 * i + 1];
            v[off + 2 * i] = a * c - b * s;
            v[off + 2 * i + 1] = a * s + b * c;
        }
    }

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
