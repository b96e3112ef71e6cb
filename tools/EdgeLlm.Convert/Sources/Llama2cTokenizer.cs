using System.Buffers.Binary;
using System.Text;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// llama2.c's <c>tokenizer.bin</c>: int32 max_token_length, then per token float32 score, int32 byte length and
/// the UTF-8 bytes, with plain spaces. Converted as llama.cpp's convert-llama2c-to-ggml does: ids 0, 1, 2 become
/// <c>&lt;unk&gt;</c> (unknown), <c>&lt;s&gt;</c> and <c>&lt;/s&gt;</c> (control), <c>&lt;0xXX&gt;</c> pieces are byte
/// tokens, an empty piece is control, everything else normal; spaces become U+2581; scores are kept.
/// </summary>
internal static class Llama2cTokenizer
{
    /// <param name="vocabSize">Tokens to read (the checkpoint's vocab_size), or -1 to read to the end of the file.</param>
    public static TokenizerData Load(string path, int vocabSize)
    {
        byte[] b = File.ReadAllBytes(path);
        if (b.Length < 4) throw Bad(path, "truncated: no max_token_length");
        int maxLen = BinaryPrimitives.ReadInt32LittleEndian(b);
        if (maxLen <= 0 || maxLen > 1 << 16) throw Bad(path, $"max_token_length {maxLen} is implausible: not a llama2.c tokenizer?");
        var tokens = new List<string>();
        var scores = new List<float>();
        var types = new List<int>();
        int at = 4;
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: false);
        while (vocabSize < 0 ? at < b.Length : tokens.Count < vocabSize)
        {
            int id = tokens.Count;
            if (at + 8 > b.Length) throw Bad(path, $"truncated at token {id} (byte {at}); {vocabSize} tokens expected");
            float score = BinaryPrimitives.ReadSingleLittleEndian(b.AsSpan(at));
            int len = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(at + 4));
            at += 8;
            if (len < 0 || len > maxLen || at + len > b.Length) throw Bad(path, $"token {id} at byte {at - 8}: length {len} is invalid (max_token_length {maxLen})");
            string text = utf8.GetString(b, at, len);
            at += len;
            int type = 1;
            if (id == 0) { text = "<unk>"; type = 2; }
            else if (id == 1) { text = "<s>"; type = 3; }
            else if (id == 2) { text = "</s>"; type = 3; }
            else if (text.Length == 0) type = 3;
            else if (IsByteToken(text)) type = 6;
            tokens.Add(text.Replace(' ', '\u2581'));
            scores.Add(score);
            types.Add(type);
        }
        if (vocabSize >= 0 && at != b.Length)
            throw Bad(path, $"{b.Length - at} bytes left after {vocabSize} tokens: the tokenizer does not match the model's vocab_size");
        return new TokenizerData
        {
            Model = "llama",
            Tokens = tokens.ToArray(),
            Scores = scores.ToArray(),
            TokenTypes = types.ToArray(),
            Unknown = 0,
            Bos = 1,
            Eos = 2,
        };
    }

    /// <summary>"&lt;0xXX&gt;" with two hex digits.</summary>
    internal static bool IsByteToken(string s) =>
        s.Length == 6 && s.StartsWith("<0x", StringComparison.Ordinal) && s[5] == '>' && Uri.IsHexDigit(s[3]) && Uri.IsHexDigit(s[4]);

    private static EdgeLlmException Bad(string path, string problem) => new($"{path}: llama2.c tokenizer: {problem}");
}
