namespace EdgeLlm.Generation;

/// <summary>
/// Proposes the next few tokens of a sequence for <see cref="SpeculativeGenerator"/> to verify in one batched pass
/// of the target model. One call per decode step (not per row), so an abstract class is fine here.
/// </summary>
public abstract class DraftSource : IDisposable
{
    /// <summary>Short description for logs ("lookup, n-gram 1..4, up to 8 tokens").</summary>
    public abstract string Name { get; }

    /// <summary>The most tokens one step may propose.</summary>
    public abstract int MaxDraft { get; }

    /// <summary>
    /// True when proposals are drawn from a distribution (<see cref="Propose"/> fills <c>q</c>); false when they
    /// are deterministic (q is a point mass at the proposed token).
    /// </summary>
    public abstract bool HasDistribution { get; }

    /// <summary>Called once per generation, before the first <see cref="Propose"/>, with the prompt.</summary>
    public virtual void Begin(ReadOnlySpan<int> prompt) { }

    /// <summary>
    /// Proposes up to <paramref name="max"/> tokens to follow <paramref name="history"/> (prompt and generated tokens,
    /// oldest first) into <paramref name="drafts"/>; returns how many. When <see cref="HasDistribution"/>, row i of
    /// <paramref name="q"/> (VocabSize floats each) receives the distribution draft i was drawn from.
    /// </summary>
    public abstract int Propose(ReadOnlySpan<int> history, int max, Span<int> drafts, Span<float> q);

    public virtual void Dispose() { }
}
