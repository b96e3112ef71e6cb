namespace EdgeLlm.Model;

/// <summary>
/// Llama 3.1's "llama3" RoPE scaling as per-pair frequency divisors, the values llama.cpp's converter writes as
/// <c>rope_freqs.weight</c> (and the runtime divides each pair's frequency by): 1 for wavelengths shorter than
/// originalContext / highFreqFactor, <paramref name="factor"/> for those longer than originalContext /
/// lowFreqFactor, and a smooth blend between.
/// </summary>
public static class Llama3Rope
{
    /// <summary>The divisors for the rotated pairs of a head of <paramref name="headDim"/> rotated elements.</summary>
    public static float[] Factors(int headDim, double theta, double factor, double lowFreqFactor, double highFreqFactor, double originalContext)
    {
        if (lowFreqFactor == highFreqFactor) throw new ArgumentException("low_freq_factor equals high_freq_factor");
        double lowWavelen = originalContext / lowFreqFactor, highWavelen = originalContext / highFreqFactor;
        var f = new float[headDim / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double freq = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highWavelen) f[i] = 1f;
            else if (wavelen > lowWavelen) f[i] = (float)factor;
            else
            {
                double smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
            }
        }
        return f;
    }
}
