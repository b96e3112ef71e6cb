using System.Text;

namespace EdgeLlm.Generation;

/// <summary>
/// llama.cpp's SentencePiece ("llama", SPM) tokenizer: spaces become U+2581, a dummy space is put in front of
/// text that starts the input or follows a special token (when add_space_prefix), the text is split into
/// characters, adjacent pairs whose concatenation is a token are merged highest score first (ties: leftmost
/// first), and whatever is left that is not a token falls back to its UTF-8 bytes as &lt;0xXX&gt; tokens.
/// </summary>
public sealed class SentencePieceTokenizer : Tokenizer
{
    private const char SpaceMark = '\u2581';

    private readonly int[] _byteTokens = new int[256];

    internal SentencePieceTokenizer(Vocabulary vocab) : base(vocab)
    {
        if (vocab.Model != TokenizerModel.SentencePiece) throw new ArgumentException("not a SentencePiece vocabulary", nameof(vocab));
        Span<char> buf = stackalloc char[6];
        for (int b = 0; b < 256; b++)
        {
            // "<0xXX>" with upper-case hex, else the byte itself as a one-character token (llama.cpp byte_to_token).
            "<0x".CopyTo(buf);
            buf[3] = "0123456789ABCDEF"[b >> 4];
            buf[4] = "0123456789ABCDEF"[b & 15];
            buf[5] = '>';
            int id = vocab.Find(buf);
            if (id < 0 && b < 128) id = vocab.Find(((char)b).ToString());
            _byteTokens[b] = id;
        }
    }

    private protected override byte[] RenderPiece(int id)
    {
        // Runs from the base constructor: uses only the vocabulary.
        string text = Vocab.Token(id);
        if (Vocab.Type(id) == TokenType.Byte)
        {
            if (text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>' &&
                byte.TryParse(text.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
                return [b];
            throw new TokenizerException(Vocab.Source, "tokenizer.ggml.tokens", $"byte token {id} is \"{text}\", not of the form <0xXX>");
        }
        return Encoding.UTF8.GetBytes(text.Replace(SpaceMark, ' '));
    }

    private protected override void EncodeText(ReadOnlySpan<char> fragment, bool afterSpecial, List<int> output)
    {
        bool prefix = Vocab.AddSpacePrefix && afterSpecial;
        var text = new char[fragment.Length + (prefix ? 1 : 0)];
        int w = 0;
        if (prefix) text[w++] = SpaceMark;
        foreach (char c in fragment) text[w++] = c == ' ' ? SpaceMark : c;
        if (text.Length == 0) return;

        // One symbol per code point (a surrogate pair stays together).
        var symbols = new List<MergeSymbol>(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int len = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            symbols.Add(new MergeSymbol { Start = i, Length = len, Prev = symbols.Count - 1, Next = i + len < text.Length ? symbols.Count + 1 : -1 });
            i += len;
        }
        var syms = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(symbols).ToArray();

        var queue = new PriorityQueue<MergeCandidate, (float, int)>(MergeOrder<float>.Descending);
        for (int i = 1; i < syms.Length; i++) TryAddBigram(text, syms, queue, i - 1, i);

        while (queue.TryDequeue(out var bg, out _))
        {
            ref var left = ref syms[bg.Left];
            ref var right = ref syms[bg.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bg.Length) continue; // stale
            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0) syms[right.Next].Prev = bg.Left;
            TryAddBigram(text, syms, queue, left.Prev, bg.Left);
            TryAddBigram(text, syms, queue, bg.Left, left.Next);
        }

        for (int i = 0; i != -1; i = syms[i].Next) Resegment(text, syms[i].Start, syms[i].Length, output);
    }

    private void TryAddBigram(char[] text, MergeSymbol[] syms, PriorityQueue<MergeCandidate, (float, int)> queue, int left, int right)
    {
        if (left < 0 || right < 0) return;
        int len = syms[left].Length + syms[right].Length;
        int id = Vocab.Find(text.AsSpan(syms[left].Start, len));
        if (id < 0) return;
        queue.Enqueue(new MergeCandidate(left, right, len), (Vocab.Score(id), left));
    }

    /// <summary>Emits a final symbol: its token if there is one, else its bytes as byte tokens.</summary>
    private void Resegment(char[] text, int start, int length, List<int> output)
    {
        var piece = text.AsSpan(start, length);
        int id = Vocab.Find(piece);
        if (id >= 0)
        {
            output.Add(id);
            return;
        }
        // Merges only ever join pieces that are tokens, so what is left here is a single character
        // missing from the vocabulary: spell it as bytes.
        Span<byte> utf8 = stackalloc byte[8];
        int n = Encoding.UTF8.GetBytes(piece, utf8);
        for (int j = 0; j < n; j++)
        {
            int bt = _byteTokens[utf8[j]];
            if (bt < 0) bt = Vocab.Unknown;
            if (bt < 0) throw new TokenizerException(Vocab.Source, "tokenizer.ggml.tokens", $"no byte token <0x{utf8[j]:X2}> and no unknown token to spell \"{piece.ToString()}\"");
            output.Add(bt);
        }
    }
}
