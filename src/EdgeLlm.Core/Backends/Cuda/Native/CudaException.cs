namespace EdgeLlm.Backends.Cuda.Native;

/// <summary>
/// A CUDA driver or NVRTC call that did not return success: the message names the call and the error
/// ("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (2)"), one line, so the CLI can print it as is.
/// </summary>
public sealed class CudaException : EdgeLlmException
{
    /// <summary>The API entry point that failed (e.g. "cuInit", "nvrtcCompileProgram").</summary>
    public string Call { get; }

    /// <summary>The raw status code (CUresult or nvrtcResult).</summary>
    public int Code { get; }

    /// <summary>The symbolic name of <see cref="Code"/> ("CUDA_ERROR_NO_DEVICE").</summary>
    public string ErrorName { get; }

    public CudaException(string call, int code, string errorName, string? detail = null)
        : base($"{call} failed: {errorName} ({code}){(string.IsNullOrEmpty(detail) ? "" : ": " + detail)}")
    {
        Call = call;
        Code = code;
        ErrorName = errorName;
    }
}
