namespace EdgeLlm.Generation;

/// <summary>
/// Tokenizer metadata that cannot be used. The message is one line naming the file and the GGUF key.
/// </summary>
public sealed class TokenizerException : EdgeLlmException
{
    public string Key { get; }

    public TokenizerException(string source, string key, string problem)
        : base($"{source}: tokenizer metadata '{key}': {problem}")
    {
        Key = key;
    }
}
