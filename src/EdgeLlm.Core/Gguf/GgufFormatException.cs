namespace EdgeLlm.Gguf;

/// <summary>
/// A model file that is not a valid GGUF file (or is one this build cannot use). The message is one line
/// that names the file, the field and the byte offset where the problem was found.
/// </summary>
public sealed class GgufFormatException : EdgeLlmException
{
    public string Path { get; }
    public long Offset { get; }
    public string Field { get; }

    public GgufFormatException(string path, string field, long offset, string problem)
        : base($"{path}: invalid GGUF: {field} at offset {offset}: {problem}")
    {
        Path = path;
        Field = field;
        Offset = offset;
    }
}
