namespace EdgeLlm.IO;

/// <summary>
/// A file written completely or not at all: the bytes go to <c>PATH.partial</c>, created exclusively (a stale
/// partial is unlinked first, never followed, so a planted symbolic link is not written through), and are renamed
/// onto PATH only when complete. PATH itself may be missing or a regular file; anything else (a device node such as
/// /dev/null, a directory, a fifo, a symbolic link) is refused before any work starts and again before the rename,
/// so no special file is ever replaced by a regular one. <see cref="Dispose"/> without <see cref="Commit"/> deletes
/// the partial file. Every write and flush goes through <see cref="Stream"/>, which turns a refused write (a full disk,
/// the file-size limit, an I/O error) into one <see cref="OutputWriteException"/> naming PATH and the cause
/// (<see cref="WriteFailure"/>), whoever the writer is.
/// </summary>
public sealed class OutputFile : IDisposable
{
    public string Path { get; }
    public string PartialPath { get; }
    /// <summary>Where the bytes go: the partial file, its write errors as <see cref="OutputWriteException"/>.</summary>
    public Stream Stream => _guard;
    private readonly FileStream _file;
    private readonly GuardedStream _guard;
    private bool _done;

    private OutputFile(string path, string partial, FileStream stream)
    {
        Path = path;
        PartialPath = partial;
        _file = stream;
        _guard = new GuardedStream(stream, path);
    }

    /// <summary>Throws <see cref="EdgeLlmException"/> unless <paramref name="path"/> is missing or a regular file.</summary>
    public static void CheckTarget(string path)
    {
        var kind = FileKinds.Of(path);
        if (kind is not (FileKind.Missing or FileKind.Regular))
            throw new EdgeLlmException($"{path}: refusing to write the output there: it is {FileKinds.Describe(kind)}, not a regular file");
    }

    public static OutputFile Create(string path, int bufferSize = 1 << 20)
    {
        CheckTarget(path);
        string partial = path + ".partial";
        var kind = FileKinds.Of(partial);
        if (kind == FileKind.Directory)
            throw new EdgeLlmException($"{partial}: a directory is in the way of the partial output file");
        if (kind != FileKind.Missing) File.Delete(partial); // unlinks a link or stale file, never follows it
        // CreateNew is O_CREAT|O_EXCL: it fails rather than follow a link planted after the delete.
        var fs = new FileStream(partial, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, bufferSize);
        return new OutputFile(path, partial, fs);
    }

    private bool _closed;

    /// <summary>Flushes the bytes to disk and closes the stream (the partial file stays until Commit or Dispose).</summary>
    public void Close()
    {
        if (_closed) return;
        try { _file.Flush(flushToDisk: true); }
        catch (Exception e) when (WriteFailure.Is(e)) { throw WriteFailure.For(Path, e); }
        _file.Dispose();
        _closed = true;
    }

    /// <summary>Closes (if still open) and renames the partial file onto <see cref="Path"/>.</summary>
    public void Commit()
    {
        Close();
        CheckTarget(Path);
        File.Move(PartialPath, Path, overwrite: true);
        _done = true;
    }

    /// <summary>Closes the stream; commits nothing. The partial file is deleted unless <see cref="Commit"/> ran.</summary>
    public void Dispose()
    {
        // Closing flushes what is buffered, which fails again on a full disk (IOException) or past the file-size limit
        // (EFBIG, which .NET reports as ArgumentOutOfRangeException): the partial file goes regardless.
        try { _file.Dispose(); }
        catch (Exception e) when (!_done && e is IOException or ArgumentOutOfRangeException) { }
        if (_done) return;
        _done = true;
        try { File.Delete(PartialPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>The partial file's stream with its write and flush failures said as <see cref="OutputWriteException"/>.</summary>
    private sealed class GuardedStream(FileStream file, string path) : Stream
    {
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            try { file.Write(buffer); }
            catch (Exception e) when (WriteFailure.Is(e)) { throw WriteFailure.For(path, e); }
        }

        public override void WriteByte(byte value) => Write([value]);

        public override void Flush()
        {
            try { file.Flush(); }
            catch (Exception e) when (WriteFailure.Is(e)) { throw WriteFailure.For(path, e); }
        }

        public override bool CanRead => false;
        public override bool CanSeek => file.CanSeek;
        public override bool CanWrite => true;
        public override long Length => file.Length;
        public override long Position { get => file.Position; set => file.Position = value; }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => file.Seek(offset, origin);
        public override void SetLength(long value) => file.SetLength(value);
    }
}
