namespace EdgeLlm.Generation;

/// <summary>GGUF <c>tokenizer.ggml.token_type</c> values (llama.cpp's llama_token_type).</summary>
public enum TokenType : byte
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>Which tokenizer algorithm a vocabulary uses (<c>tokenizer.ggml.model</c>).</summary>
public enum TokenizerModel
{
    /// <summary>"llama": SentencePiece BPE with byte fallback (llama.cpp SPM).</summary>
    SentencePiece,

    /// <summary>"gpt2": byte-level BPE with merge ranks (llama.cpp BPE).</summary>
    Bpe,
}
