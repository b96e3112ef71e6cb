using EdgeLlm.Compute;

namespace EdgeLlm.Model;

/// <summary>
/// One sequence's share of a multi-sequence batch (<see cref="LlamaModel.ForwardSequences"/>): the next
/// <see cref="Count"/> tokens of the batch belong to the sequence whose keys and values live in
/// <see cref="Cache"/>, at positions StartPos, StartPos+1, ...
/// </summary>
public readonly record struct SequenceBatch(KvCache Cache, int StartPos, int Count);
