using EdgeLlm.Backends.Cuda;
using EdgeLlm.Model;

namespace EdgeLlm.Cli;

/// <summary>The per-kernel table of EDGELLM_CUDA_PROFILE=1, printed to stderr at the end of <c>run</c> and <c>bench</c>.</summary>
internal static class CudaProfileOutput
{
    public static void Print(LlamaModel model, TextWriter err)
    {
        if (model.Backend is not CudaBackend { Profile: { } profile }) return;
        err.WriteLine($"cuda kernel profile ({CudaSettings.ProfileVariable}=1; graphs off, every launch timed with CUDA events):");
        err.Write(profile.Format());
    }
}
