using System.Buffers;
using System.Text;

namespace EdgeLlm.Generation;

/// <summary>
/// Streaming detokenizer: feed token ids one at a time and get the text they complete. A character split
/// across byte tokens (e.g. an emoji as four &lt;0xXX&gt; tokens) is held back until its last byte arrives;
/// invalid byte sequences come out as U+FFFD. Control and unknown tokens print nothing (unless rendering
/// specials). With <c>stripLeadingSpace</c> (the default for SentencePiece vocabularies, which put a dummy
/// space in front of the text) one leading space is dropped from the first token that prints anything, so
/// [BOS, "▁Once"] and ["▁Once"] both read "Once" (llama.cpp's detokenize strips it only without a BOS; this
/// follows SentencePiece and llama2.c). A caller continuing an already printed prompt passes false.
/// After construction, <see cref="Append(int, Span{char})"/> does not allocate.
/// </summary>
public sealed class TokenDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _renderSpecial;
    private readonly bool _stripLeadingSpace;
    private byte[] _pending = new byte[64]; // bytes of an unfinished character (at most 3) plus the new piece
    private int _pendingCount;
    private bool _atStart = true;
    private char[] _chars = new char[64];

    public TokenDecoder(Tokenizer tokenizer, bool stripLeadingSpace, bool renderSpecial = false)
    {
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _stripLeadingSpace = stripLeadingSpace;
        _renderSpecial = renderSpecial;
    }

    /// <summary>Forgets buffered bytes and starts over (the next printing token has its space stripped again).</summary>
    public void Reset()
    {
        _pendingCount = 0;
        _atStart = true;
    }

    /// <summary>Bytes held back because they do not yet form a whole character.</summary>
    public int PendingBytes => _pendingCount;

    /// <summary>Adds a token; returns the text it completes (often empty, or more than one character).</summary>
    public string Append(int id)
    {
        // UTF-8 never decodes to more UTF-16 chars than it has bytes.
        int most = _pendingCount + _tokenizer.TokenPiece(id, _renderSpecial).Length;
        if (_chars.Length < most) _chars = new char[Math.Max(most, _chars.Length * 2)];
        int n = Append(id, _chars);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }

    /// <summary>
    /// Adds a token and writes the completed text into <paramref name="output"/>. Returns the number of chars
    /// written; if <paramref name="output"/> is too small nothing is consumed and the return value is
    /// -(chars needed). No allocation once the internal byte buffer has grown to the longest token.
    /// </summary>
    public int Append(int id, Span<char> output)
    {
        ReadOnlySpan<byte> piece = _tokenizer.TokenPiece(id, _renderSpecial);
        if (piece.IsEmpty) return 0;
        if (_atStart && _stripLeadingSpace && piece[0] == (byte)' ') piece = piece[1..];

        int total = _pendingCount + piece.Length;
        if (_pending.Length < total) Array.Resize(ref _pending, Math.Max(total, _pending.Length * 2));
        // Stage pending + piece; nothing is committed until the output is known to fit.
        piece.CopyTo(_pending.AsSpan(_pendingCount));
        ReadOnlySpan<byte> bytes = _pending.AsSpan(0, total);

        int complete = CompletePrefix(bytes);
        int needed = Encoding.UTF8.GetCharCount(bytes[..complete]);
        if (needed > output.Length) return -needed;
        int written = Encoding.UTF8.GetChars(bytes[..complete], output);
        bytes[complete..].CopyTo(_pending); // keep the unfinished tail
        _pendingCount = total - complete;
        _atStart = false;
        return written;
    }

    /// <summary>Returns any held-back bytes as text (an unfinished character becomes U+FFFD) and clears them.</summary>
    public string Flush()
    {
        if (_pendingCount == 0) return string.Empty;
        string s = Encoding.UTF8.GetString(_pending, 0, _pendingCount);
        _pendingCount = 0;
        return s;
    }

    /// <summary>
    /// Length of the longest prefix that does not end inside a character that could still be completed:
    /// everything except a trailing, so far valid, incomplete UTF-8 sequence.
    /// </summary>
    private static int CompletePrefix(ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        while (i < bytes.Length)
        {
            OperationStatus st = Rune.DecodeFromUtf8(bytes[i..], out _, out int used);
            if (st == OperationStatus.NeedMoreData) return i; // valid so far but cut short: wait for more bytes
            i += used; // Done, or InvalidData (decoded later as U+FFFD)
        }
        return i;
    }
}
