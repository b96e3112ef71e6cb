using EdgeLlm.Gguf;

namespace EdgeLlm.Compute;

/// <summary>
/// A backend capability (checked once, when a model loads): products of one input with several weights as one
/// product over the weights' rows stacked at load, split back into one buffer per weight. The CUDA backend uses it
/// for Q/K/V and gate/up (one weight read pass and one launch instead of three or two, and the split fused with
/// what follows it). Backends without it run the separate products; the results are the same either way (each
/// output row is the same dot product).
/// </summary>
public interface IStackedMatMul
{
    /// <summary>
    /// Loads <paramref name="parts"/> (2 or 3 matrices of one type and row length) as one weight with their rows in
    /// order, named <paramref name="name"/>; null when this backend would rather keep them apart (the caller then
    /// loads each with <see cref="IBackend.LoadWeight"/>).
    /// </summary>
    BackendWeight? LoadStacked(string name, ReadOnlySpan<TensorView> parts);

    /// <summary>
    /// For each of <paramref name="nTokens"/> token rows of <paramref name="x"/>: dst0 = part 0 . x, dst1 = part 1 . x,
    /// dst2 = part 2 . x (null for two parts), each token-major as <see cref="IBackend.MatMul"/> writes them.
    /// </summary>
    void MatMulStacked(BackendWeight stacked, BackendBuffer x, int nTokens, BackendBuffer dst0, BackendBuffer dst1, BackendBuffer? dst2);
}
