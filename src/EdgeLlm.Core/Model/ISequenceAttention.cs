using EdgeLlm.Compute;

namespace EdgeLlm.Model;

/// <summary>
/// A backend that runs the attention part of one layer for all the sequences of a multi-sequence batch
/// (<see cref="LlamaModel.ForwardSequences"/>: the server's slots) in one call: RoPE of every row at its own
/// sequence's position, each sequence's K/V rows stored in its own cache, and the attention of every sequence against
/// its cache, reading the rows where they lie in the batch buffers (no copies) and, on the CPU, in one worker-pool
/// dispatch for all of them. Backends without it run <see cref="IBackend.Rope"/>, <see cref="IBackend.StoreKv"/> and
/// <see cref="IBackend.Attention"/> per sequence; every output row is the same either way.
/// </summary>
public interface ISequenceAttention
{
    /// <summary>
    /// For the batch rows of <paramref name="seqs"/> (sequence s owns the next seqs[s].Count rows of q, k, v and dst,
    /// at positions StartPos, StartPos + 1, ...): rotates q (<paramref name="nHeads"/> heads a row) and k
    /// (<paramref name="nKvHeads"/> heads) with <paramref name="rope"/>, stores k and v at those positions of layer
    /// <paramref name="layer"/> of the sequence's cache, and writes the attention output of every row to dst, as
    /// <see cref="IBackend.Attention"/> computes it for that sequence alone.
    /// </summary>
    void AttendSequences(BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer dst, ReadOnlySpan<SequenceBatch> seqs,
        int layer, int nHeads, int nKvHeads, RopeSpec rope, AttentionOptions options);

    /// <summary>
    /// <see cref="AttendSequences"/>, then <c>product = weight · dst</c> as <see cref="IBackend.MatMul"/> (the layer's
    /// attention output projection): the same bits as the two calls, which this default makes; the CPU runs a decode
    /// step's attention inside the product's dispatch.
    /// </summary>
    void AttendSequencesMatMul(BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer dst, ReadOnlySpan<SequenceBatch> seqs,
        int layer, int nHeads, int nKvHeads, RopeSpec rope, AttentionOptions options, BackendWeight weight, BackendBuffer product)
    {
        AttendSequences(q, k, v, dst, seqs, layer, nHeads, nKvHeads, rope, options);
        int rows = 0;
        foreach (var sq in seqs) rows += sq.Count;
        ((IBackend)this).MatMul(weight, dst, product, rows);
    }
}
