using System.Runtime.InteropServices;
using System.Text;

namespace EdgeLlm.IO;

/// <summary>
/// The process's standard streams as the command-line tools use them. At start, a closed descriptor 0, 1 or 2 is
/// filled with /dev/null (otherwise the next file opened, a model say, would take its number and receive the output),
/// and remembered as closed: writing to a closed stdout, or to a pipe whose reader went away (EPIPE), raises
/// <see cref="OutputClosedException"/> at that write, which the tools report in one line and exit 1 on; reading a
/// closed stdin raises the same kind of error. .NET's Console.Out silently drops EPIPE, which is why stdout is a
/// stream of our own over descriptor 1.
/// </summary>
public static partial class StandardStreams
{
    private const int F_GETFD = 1;
    private const int O_RDWR = 2;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(int fd, int cmd);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int open(string path, int flags);

    private const int F_GETFL = 3;
    private const int O_ACCMODE = 3, O_RDONLY = 0, O_WRONLY = 1;

    /// <summary>Whether descriptor <paramref name="fd"/> is open.</summary>
    public static bool IsOpen(int fd) => !OperatingSystem.IsLinux() || fcntl(fd, F_GETFD) != -1;

    /// <summary>
    /// Whether standard descriptor <paramref name="fd"/> was given to the process open for the direction it is used in.
    /// The .NET runtime opens files of its own before Main (/dev/urandom first), and each takes the lowest free number:
    /// with stdout closed, descriptor 1 is the runtime's read-only /dev/urandom by the time Main runs. So a descriptor
    /// that lacks the needed access mode, or that is the kernel's random device, counts as closed; it is left alone
    /// (the runtime owns it) and never written or read as a standard stream.
    /// </summary>
    public static bool IsUsable(int fd, bool write)
    {
        if (!OperatingSystem.IsLinux()) return true;
        int flags = fcntl(fd, F_GETFL);
        if (flags == -1) return false;
        int mode = flags & O_ACCMODE;
        if (write ? mode == O_RDONLY : mode == O_WRONLY) return false;
        string? target = null;
        try { target = new FileInfo($"/proc/self/fd/{fd}").LinkTarget; } catch (IOException) { } catch (UnauthorizedAccessException) { }
        return target is not ("/dev/urandom" or "/dev/random");
    }

    /// <summary>
    /// Checks descriptors 0..2, plugs the closed ones with /dev/null (lowest first, so each open lands on its number),
    /// and returns stdout, stderr and stdin for a tool. Call once, first thing in Main.
    /// </summary>
    public static (TextWriter Out, TextWriter Err, TextReader In) Open()
    {
        bool inOpen = IsUsable(0, write: false), outOpen = IsUsable(1, write: true), errOpen = IsUsable(2, write: true);
        if (OperatingSystem.IsLinux())
            for (int fd = 0; fd < 3; fd++)
                if (!IsOpen(fd)) open("/dev/null", O_RDWR);
        var utf8 = new UTF8Encoding(false);
        TextWriter err = errOpen ? new StreamWriter(new StdStream(2, "standard error"), utf8, 1024) { AutoFlush = true } : TextWriter.Null;
        TextWriter @out = new StreamWriter(outOpen ? new StdStream(1, "standard output") : new ClosedStream("standard output"), utf8, 4096);
        TextReader @in = inOpen ? Console.In : new StreamReader(new ClosedStream("standard input"));
        return (@out, err, @in);
    }

    /// <summary>Runs a tool's main with the standard streams; whatever the tool leaves unflushed is flushed here, once.</summary>
    public static int Run(string tool, Func<TextWriter, TextWriter, TextReader, int> main)
    {
        var (o, e, i) = Open();
        int rc;
        try
        {
            rc = main(o, e, i);
            o.Flush();
        }
        catch (OutputClosedException x)
        {
            TryWriteLine(e, $"{tool}: error: {x.Message}");
            rc = 1;
        }
        try { o.Dispose(); } catch (OutputClosedException) { }
        return rc;
    }

    /// <summary>
    /// Writes one line to descriptor 2 outside a tool's streams (the image loader's warnings, end-of-run reports); false
    /// when it could not be written (stderr redirected to a full disk or a file at the file-size limit, EFBIG with
    /// SIGXFSZ handled): never throws, so a line that cannot be said cannot abort the process either. A stderr that was
    /// closed at start counts as written (nothing to say it on).
    /// </summary>
    public static bool TryWriteError(string line)
    {
        if (!IsUsable(2, write: true)) return true;
        try
        {
            new StdStream(2, "standard error").Write(new UTF8Encoding(false).GetBytes(line + "\n"));
            return true;
        }
        catch (OutputClosedException) { return false; }
    }

    private static void TryWriteLine(TextWriter w, string line)
    {
        try { w.WriteLine(line); } catch (OutputClosedException) { }
    }

    /// <summary>A write-only (or read-only for 0) stream over an inherited descriptor that turns write errors into one clear exception.</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint write(int fd, byte* buffer, nint count);

    private const int EINTR = 4, EPIPE = 32;

    /// <summary>
    /// Writes straight to the descriptor with write(2), which appends at the descriptor's shared offset: a FileStream
    /// over a regular file would write at a position of its own (pwrite), so in <c>{ edgellm ...; echo x; } &gt; f</c>
    /// the next writer would overwrite what this one wrote.
    /// </summary>
    private sealed class StdStream(int fd, string what) : Stream
    {
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override unsafe void Write(ReadOnlySpan<byte> buffer)
        {
            fixed (byte* p = buffer)
            {
                nint done = 0;
                while (done < buffer.Length)
                {
                    nint n = write(fd, p + done, buffer.Length - done);
                    if (n >= 0) { done += n; continue; }
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    string why = Marshal.GetPInvokeErrorMessage(errno).TrimEnd('.');
                    throw new OutputClosedException(errno == EPIPE ? $"{what} was closed ({why}); stopping" : $"{what} could not be written ({why}); stopping");
                }
            }
        }

        public override void Flush() { }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>A descriptor that was closed when the process started: any read or write is the one-line error.</summary>
    private sealed class ClosedStream(string what) : Stream
    {
        private OutputClosedException Closed() => new($"{what} is closed (the process was started without it)");
        public override void Write(byte[] buffer, int offset, int count) => throw Closed();
        public override void Write(ReadOnlySpan<byte> buffer) => throw Closed();
        public override int Read(byte[] buffer, int offset, int count) => throw Closed();
        public override int Read(Span<byte> buffer) => throw Closed();
        public override void Flush() { }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>A standard stream that is closed, or whose reader went away (broken pipe).</summary>
public sealed class OutputClosedException(string message) : EdgeLlmException(message);
