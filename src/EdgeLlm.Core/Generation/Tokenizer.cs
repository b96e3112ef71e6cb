using System.Runtime.CompilerServices;
using System.Text;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>
/// Text to token ids and back, for a GGUF vocabulary. <see cref="FromGguf"/> picks the algorithm from
/// <c>tokenizer.ggml.model</c>: <see cref="SentencePieceTokenizer"/> ("llama") or <see cref="BpeTokenizer"/> ("gpt2").
/// Encoding follows llama.cpp's llama_tokenize: special tokens written literally in the text are cut out
/// first (user-defined ones always, control and unknown ones only with <c>parseSpecial</c>), and the text
/// between them is tokenized by the model's algorithm.
/// </summary>
public abstract class Tokenizer
{
    private readonly byte[][] _pieces;        // what a token prints as (control/unknown: nothing)
    private readonly byte[][] _specialPieces; // what a token prints as when specials are rendered
    private readonly SpecialTokenMatcher _specials;

    public Vocabulary Vocab { get; }

    private protected Tokenizer(Vocabulary vocab)
    {
        Vocab = vocab;
        _specials = new SpecialTokenMatcher(vocab, vocab.SpecialTokensByLength);
        int n = vocab.Count;
        _pieces = new byte[n][];
        _specialPieces = new byte[n][];
        for (int id = 0; id < n; id++)
        {
            // As llama.cpp's token_to_piece: normal and byte tokens render through the model's decoding,
            // user-defined ones as their text, control/unknown ones as their text only when asked, and
            // unused/undefined ones as nothing.
            switch (vocab.Type(id))
            {
                case TokenType.Normal:
                case TokenType.Byte:
                    _pieces[id] = RenderPiece(id);
                    _specialPieces[id] = _pieces[id];
                    break;
                case TokenType.UserDefined:
                    _pieces[id] = Encoding.UTF8.GetBytes(vocab.Token(id));
                    _specialPieces[id] = _pieces[id];
                    break;
                case TokenType.Control:
                case TokenType.Unknown:
                    _pieces[id] = [];
                    _specialPieces[id] = Encoding.UTF8.GetBytes(vocab.Token(id));
                    break;
                default:
                    _pieces[id] = [];
                    _specialPieces[id] = [];
                    break;
            }
        }
    }

    /// <summary>Builds the tokenizer the GGUF file's tokenizer metadata asks for.</summary>
    public static Tokenizer FromGguf(GgufFile file) => Create(Vocabulary.FromGguf(file));

    private static readonly ConditionalWeakTable<LlamaModel, Tokenizer> ByModel = new();

    /// <summary>
    /// The tokenizer of a loaded model's file, built the first time it is asked for and then shared by everything that
    /// works on that model (commands, chat and embedding clients, the server); a tokenizer is immutable, so sharing it
    /// across threads is safe. It lives as long as the model object.
    /// </summary>
    public static Tokenizer For(LlamaModel model) => ByModel.GetValue(model, static m => FromGguf(m.File));

    public static Tokenizer Create(Vocabulary vocab) => vocab.Model switch
    {
        TokenizerModel.SentencePiece => new SentencePieceTokenizer(vocab),
        TokenizerModel.Bpe => new BpeTokenizer(vocab),
        _ => throw new ArgumentOutOfRangeException(nameof(vocab), vocab.Model, "unknown tokenizer model"),
    };

    /// <summary>
    /// The bytes of a normal or byte token as it appears in text. Called from this class's constructor, so an
    /// implementation may use only the vocabulary and static tables.
    /// </summary>
    private protected abstract byte[] RenderPiece(int id);

    /// <summary>Tokenizes one stretch of plain text (no special tokens in it) and appends the ids.</summary>
    /// <param name="afterSpecial">The text starts the input or follows a special token (SentencePiece adds its space prefix then).</param>
    private protected abstract void EncodeText(ReadOnlySpan<char> text, bool afterSpecial, List<int> output);

    /// <summary>
    /// Tokenizes <paramref name="text"/>. With <paramref name="addBos"/> the vocabulary's special tokens are
    /// added as llama.cpp's add_special does: BOS in front when <c>add_bos_token</c> (default on for
    /// SentencePiece and Llama 3), EOS at the end when <c>add_eos_token</c>. With <paramref name="parseSpecial"/>
    /// control tokens written literally in the text (e.g. "&lt;s&gt;") become their ids; without it they are plain text.
    /// </summary>
    public int[] Encode(string text, bool addBos, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        if (addBos && Vocab.AddBos) output.Add(Vocab.Bos);

        if (text.Length > 0)
        {
            var fragments = Partition(text, parseSpecial);
            bool afterSpecial = true;
            foreach (var f in fragments)
            {
                if (f.Token >= 0)
                {
                    output.Add(f.Token);
                    afterSpecial = true;
                }
                else
                {
                    EncodeText(text.AsSpan(f.Start, f.Length), afterSpecial, output);
                    afterSpecial = false;
                }
            }
        }

        if (addBos && Vocab.AddEos) output.Add(Vocab.Eos);
        return output.ToArray();
    }

    /// <summary>A stretch of raw text (Token = -1) or one special token cut out of the text.</summary>
    private readonly record struct Fragment(int Token, int Start, int Length);

    /// <summary>Cuts literal special-token texts out of the input, longest token first (llama.cpp's tokenizer_st_partition).</summary>
    private List<Fragment> Partition(string text, bool parseSpecial)
    {
        var cuts = _specials.Find(text, parseSpecial);
        var list = new List<Fragment>(2 * cuts.Count + 1);
        int at = 0;
        foreach (var (start, length, id) in cuts)
        {
            if (start > at) list.Add(new Fragment(-1, at, start - at));
            list.Add(new Fragment(id, start, length));
            at = start + length;
        }
        if (at < text.Length) list.Add(new Fragment(-1, at, text.Length - at));
        return list;
    }

    /// <summary>
    /// What a token contributes to the output text, as UTF-8 bytes (a byte token is one byte and may be part of a
    /// character). Control and unknown tokens give nothing unless <paramref name="renderSpecial"/>. No allocation.
    /// </summary>
    public ReadOnlySpan<byte> TokenPiece(int id, bool renderSpecial = false)
    {
        if ((uint)id >= (uint)_pieces.Length) throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary (0 to {_pieces.Length - 1})");
        return renderSpecial ? _specialPieces[id] : _pieces[id];
    }

    /// <summary>A copy of <see cref="TokenPiece"/>.</summary>
    public byte[] TokenBytes(int id, bool renderSpecial = false) => TokenPiece(id, renderSpecial).ToArray();

    /// <summary>A streaming detokenizer (see <see cref="TokenDecoder"/>).</summary>
    public TokenDecoder CreateDecoder(bool? stripLeadingSpace = null) => new(this, stripLeadingSpace ?? Vocab.AddSpacePrefix);

    /// <summary>Decodes a whole sequence at once (control tokens print nothing; SentencePiece drops the dummy-prefix space).</summary>
    public string Decode(ReadOnlySpan<int> ids, bool renderSpecial = false)
    {
        var decoder = new TokenDecoder(this, Vocab.AddSpacePrefix, renderSpecial);
        var sb = new StringBuilder();
        foreach (int id in ids) sb.Append(decoder.Append(id));
        sb.Append(decoder.Flush());
        return sb.ToString();
    }
}
