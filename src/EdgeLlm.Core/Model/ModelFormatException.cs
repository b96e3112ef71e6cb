namespace EdgeLlm.Model;

/// <summary>
/// A GGUF file that parses but is not a usable Llama model: a missing or out-of-range hyperparameter, a
/// missing tensor, a tensor of the wrong shape or of a type EdgeLlm cannot compute. The message is one
/// line naming the file and the metadata key or tensor at fault.
/// </summary>
public sealed class ModelFormatException : EdgeLlmException
{
    public string Path { get; }

    /// <summary>The metadata key or tensor name at fault.</summary>
    public string Item { get; }

    public ModelFormatException(string path, string item, string problem)
        : base($"{path}: invalid model: {item}: {problem}")
    {
        Path = path;
        Item = item;
    }
}
