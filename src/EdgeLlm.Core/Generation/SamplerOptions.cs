namespace EdgeLlm.Generation;

/// <summary>
/// Sampling settings with llama.cpp's defaults. The chain runs in llama.cpp's default order:
/// penalties -> top-k -> top-p -> min-p -> temperature -> seeded draw.
/// </summary>
public sealed record SamplerOptions
{
    /// <summary>Softmax temperature; &lt;= 0 means greedy (argmax of the penalised logits).</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep the k most likely tokens; &lt;= 0 turns it off.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Keep the smallest most-likely prefix whose probability mass reaches p; 1 turns it off.</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Drop tokens less likely than MinP times the most likely one; 0 turns it off.</summary>
    public float MinP { get; init; } = 0.05f;

    /// <summary>How many of the most recent tokens the penalties look at; 0 turns them off, -1 means the whole history.</summary>
    public int RepeatLastN { get; init; } = 64;

    /// <summary>Repeated tokens: positive logits are divided by this, negative ones multiplied; 1 turns it off.</summary>
    public float RepeatPenalty { get; init; } = 1.0f;

    /// <summary>Subtracted once from the logit of every token that occurs in the window; 0 turns it off.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>Subtracted per occurrence in the window; 0 turns it off.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>Seed of the draw; -1 (or llama.cpp's 0xFFFFFFFF) picks a random one.</summary>
    public long Seed { get; init; } = -1;

    /// <summary>Plain argmax decoding.</summary>
    public static SamplerOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Throws a one-line <see cref="ArgumentException"/> naming the first setting that is out of range.</summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature)) throw new ArgumentException($"temperature must be a finite number, got {Temperature}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException($"min-p must be in [0, 1], got {MinP}");
        if (RepeatLastN < -1) throw new ArgumentException($"repeat-last-n must be -1, 0 or positive, got {RepeatLastN}");
        if (!(RepeatPenalty > 0) || !float.IsFinite(RepeatPenalty)) throw new ArgumentException($"repeat penalty must be a positive number, got {RepeatPenalty}");
        if (!float.IsFinite(PresencePenalty)) throw new ArgumentException($"presence penalty must be a finite number, got {PresencePenalty}");
        if (!float.IsFinite(FrequencyPenalty)) throw new ArgumentException($"frequency penalty must be a finite number, got {FrequencyPenalty}");
    }
}
