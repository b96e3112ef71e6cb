using System.Numerics;
using System.Runtime.InteropServices;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>
/// Refuses non-finite logits: a model whose weights or metadata hold NaN or infinity produces them, and sampling or
/// printing them would give silent garbage (or JSON that is not JSON). The check is one vector pass over the row.
/// </summary>
public static class LogitCheck
{
    /// <summary>True when every value is finite (x·0 is 0 for a finite x and NaN for NaN or ±∞).</summary>
    public static bool AllFinite(ReadOnlySpan<float> x)
    {
        var acc = Vector<float>.Zero;
        var zero = Vector<float>.Zero;
        var v = MemoryMarshal.Cast<float, Vector<float>>(x);
        foreach (var e in v) acc += e * zero;
        float tail = 0f;
        for (int i = v.Length * Vector<float>.Count; i < x.Length; i++) tail += x[i] * 0f;
        return Vector.Sum(acc) == 0f && tail == 0f;
    }

    /// <summary>Throws a one-line <see cref="EdgeLlmException"/> naming the model and the position when a value is not finite.</summary>
    public static void Require(LlamaModel model, ReadOnlySpan<float> logits, int position)
    {
        if (!AllFinite(logits))
            throw new EdgeLlmException($"{model.File.Path}: the model produced non-finite logits (NaN or infinity) at position {position}; its weights or metadata hold NaN/Inf values");
    }

    /// <summary><see cref="Require(LlamaModel, ReadOnlySpan{float}, int)"/> for a row the backend checked itself (<see cref="LlamaModel.ForwardGreedy"/>).</summary>
    public static void Require(LlamaModel model, bool allFinite, int position)
    {
        if (!allFinite)
            throw new EdgeLlmException($"{model.File.Path}: the model produced non-finite logits (NaN or infinity) at position {position}; its weights or metadata hold NaN/Inf values");
    }

    /// <summary><see cref="Require(LlamaModel, ReadOnlySpan{float}, int)"/> for consecutive rows of <paramref name="vocab"/> logits, positions 0, 1, ...</summary>
    public static void RequireRows(LlamaModel model, ReadOnlySpan<float> logits, int vocab)
    {
        for (int p = 0; (long)(p + 1) * vocab <= logits.Length; p++) Require(model, logits.Slice(p * vocab, vocab), p);
    }
}
