using EdgeLlm.Compute;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// What a recorded token pick (<see cref="CudaOpKind.ArgMax"/>, <see cref="CudaOpKind.Sample"/>) launches with besides
/// the logits: the chain's settings (none for the argmax), the device work space, the sample state block
/// (<see cref="CudaSampleState"/>) and the result slot. Nothing in it changes per token, so two decode steps with the
/// same settings compare equal (<see cref="CudaOp.SameLaunch"/>) and the captured graph, sampler included, replays.
/// Kept by the backend and made anew only when one of them changes (no allocation per token).
/// </summary>
internal sealed record CudaSampleLaunch(DeviceSamplerSettings? Settings, ulong Work, int Padded, ulong State, ulong Out, ulong Feed);
