using System.Runtime.InteropServices;

namespace EdgeLlm.IO;

/// <summary>
/// A write to an output file that the system refused: a full disk (ENOSPC), an exhausted quota (EDQUOT), the file-size
/// limit (EFBIG, see <see cref="FileSizeLimit"/>), an I/O error. .NET says these in its own words ("No space left on device
/// : '/x/out.partial'", or an <see cref="ArgumentOutOfRangeException"/> for EFBIG); <see cref="OutputFile"/> turns them
/// into this one line naming the file the user asked for and the cause, and deletes its partial file.
/// </summary>
public sealed class OutputWriteException(string path, string reason, string outcome = "nothing written") : EdgeLlmException($"{path}: {reason}; {outcome}")
{
    /// <summary>The file the user named (not its .partial).</summary>
    public string Path { get; } = path;

    /// <summary>The cause in a few words, without the path ("the disk is full (no space left on device)").</summary>
    public string Reason { get; } = reason;
}

public static class WriteFailure
{
    private const int EIO = 5, EFBIG = 27, ENOSPC = 28, EROFS = 30, EDQUOT = 122;

    /// <summary>Whether <paramref name="e"/> is a refused write (or flush) of an open file, as .NET reports one.</summary>
    public static bool Is(Exception e) => FileSizeLimit.IsExceeded(e) || e is IOException;

    /// <summary>The one-line error for the refused write <paramref name="e"/> to <paramref name="path"/>.</summary>
    public static OutputWriteException For(string path, Exception e) => e as OutputWriteException ?? new(path, Reason(e));

    /// <summary>The cause of the refused write <paramref name="e"/> in a few words.</summary>
    public static string Reason(Exception e)
    {
        if (FileSizeLimit.IsExceeded(e)) return FileSizeLimit.Reason;
        // On Unix .NET's IOException for a failed system call carries the errno as its HResult.
        int errno = e.HResult;
        return errno switch
        {
            ENOSPC => "the disk is full (no space left on device)",
            EDQUOT => "the disk quota is exceeded",
            EFBIG => FileSizeLimit.Reason,
            EROFS => "the file system is read-only",
            EIO => "the device reported an I/O error",
            > 0 and < 4096 => $"the write failed ({Marshal.GetPInvokeErrorMessage(errno).TrimEnd('.')})",
            _ => $"the write failed ({ErrorText.OneLine(e)})",
        };
    }
}
