using System.Runtime.InteropServices;

namespace EdgeLlm.Backends.Cuda.Native;

/// <summary>
/// NVRTC, the runtime CUDA C++ compiler, as source-generated <c>[LibraryImport]</c>s. Strings cross as
/// UTF-8 byte pointers the caller owns (compilation is rare, so no marshalling layer). The library is
/// bound through <see cref="CudaLibraries"/>, which must have loaded it first.
/// </summary>
public static unsafe partial class Nvrtc
{
    private const string Lib = CudaLibraries.NvrtcName;

    // nvrtcResult values (nvrtc.h).
    public const int Success = 0;
    public const int ErrorOutOfMemory = 1;
    public const int ErrorProgramCreationFailure = 2;
    public const int ErrorInvalidInput = 3;
    public const int ErrorInvalidProgram = 4;
    public const int ErrorInvalidOption = 5;
    public const int ErrorCompilation = 6;
    public const int ErrorBuiltinOperationFailure = 7;
    public const int ErrorNoNameExpressionsAfterCompilation = 8;
    public const int ErrorNoLoweredNamesBeforeCompilation = 9;
    public const int ErrorNameExpressionNotValid = 10;
    public const int ErrorInternalError = 11;
    public const int ErrorTimeFileWriteFailed = 12;

    [LibraryImport(Lib)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib)] public static partial int nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(Lib)] public static partial int nvrtcGetSupportedArchs(int* archs);

    [LibraryImport(Lib)]
    public static partial int nvrtcCreateProgram(out nint program, byte* source, byte* name, int headerCount, byte** headers, byte** includeNames);

    [LibraryImport(Lib)] public static partial int nvrtcCompileProgram(nint program, int optionCount, byte** options);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLog(nint program, byte* log);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTXSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBINSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBIN(nint program, byte* cubin);
    [LibraryImport(Lib)] public static partial int nvrtcDestroyProgram(ref nint program);
    [LibraryImport(Lib)] public static partial byte* nvrtcGetErrorString(int result);

    /// <summary>Throws a <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="status"/> is NVRTC_SUCCESS.</summary>
    public static void Check(int status, string call, string? detail = null)
    {
        if (status != Success) throw new CudaException(call, status, ErrorName(status), detail);
    }

    /// <summary>The nvrtcResult's name (our table first, so it reads the same on every NVRTC version).</summary>
    public static string ErrorName(int status) => status switch
    {
        Success => "NVRTC_SUCCESS",
        ErrorOutOfMemory => "NVRTC_ERROR_OUT_OF_MEMORY",
        ErrorProgramCreationFailure => "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
        ErrorInvalidInput => "NVRTC_ERROR_INVALID_INPUT",
        ErrorInvalidProgram => "NVRTC_ERROR_INVALID_PROGRAM",
        ErrorInvalidOption => "NVRTC_ERROR_INVALID_OPTION",
        ErrorCompilation => "NVRTC_ERROR_COMPILATION",
        ErrorBuiltinOperationFailure => "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
        ErrorNoNameExpressionsAfterCompilation => "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
        ErrorNoLoweredNamesBeforeCompilation => "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
        ErrorNameExpressionNotValid => "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
        ErrorInternalError => "NVRTC_ERROR_INTERNAL_ERROR",
        ErrorTimeFileWriteFailed => "NVRTC_ERROR_TIME_FILE_WRITE_FAILED",
        _ => FromLibrary(status),
    };

    private static string FromLibrary(int status)
    {
        try
        {
            byte* s = nvrtcGetErrorString(status);
            if (s != null) return Marshal.PtrToStringUTF8((nint)s) ?? $"nvrtcResult {status}";
        }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
        return $"nvrtcResult {status}";
    }
}
