using System.Text;

namespace EdgeLlm.Generation;

/// <summary>
/// llama.cpp's byte-level BPE ("gpt2") tokenizer: the text is split into words by the vocabulary's
/// pre-tokenizer, each word's UTF-8 bytes are written as GPT-2 byte characters, and adjacent symbols are
/// merged lowest merge rank first (ties: leftmost first) until no ranked pair is left. With ignore_merges
/// (Llama 3) a word that is itself a token is emitted whole. A final symbol that is not a token is emitted
/// byte by byte (bytes without a token are dropped, as llama.cpp does).
/// </summary>
public sealed class BpeTokenizer : Tokenizer
{
    // Merge ranks keyed by (char)left.Length + left + right, so a pair is found from spans without allocating.
    private readonly Dictionary<string, int> _ranks;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _ranksBySpan;

    internal BpeTokenizer(Vocabulary vocab) : base(vocab)
    {
        if (vocab.Model != TokenizerModel.Bpe) throw new ArgumentException("not a byte-level BPE vocabulary", nameof(vocab));
        var merges = vocab.Merges;
        _ranks = new Dictionary<string, int>(merges.Count, StringComparer.Ordinal);
        for (int i = 0; i < merges.Count; i++)
        {
            string m = merges[i];
            // As llama.cpp: split at the first space after the first character; a line without one is an empty pair.
            int sp = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
            string left = sp >= 0 ? m[..sp] : "";
            string right = sp >= 0 ? m[(sp + 1)..] : "";
            if (left.Length > char.MaxValue)
                throw new TokenizerException(vocab.Source, "tokenizer.ggml.merges", $"merge {i} is {left.Length} characters long");
            _ranks.TryAdd((char)left.Length + left + right, i); // the first (lowest) rank wins
        }
        _ranksBySpan = _ranks.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    private protected override byte[] RenderPiece(int id)
    {
        // Runs from the base constructor: uses only the vocabulary and the static byte table.
        string text = Vocab.Token(id);
        var bytes = new List<byte>(text.Length);
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < text.Length; i++)
        {
            int b = ByteLevelMap.Decode(text[i]);
            if (b >= 0)
            {
                bytes.Add((byte)b);
                continue;
            }
            // Not a byte character: keep the character's own UTF-8 bytes.
            int len = char.IsHighSurrogate(text[i]) && i + 1 < text.Length ? 2 : 1;
            int n = Encoding.UTF8.GetBytes(text.AsSpan(i, len), utf8);
            for (int j = 0; j < n; j++) bytes.Add(utf8[j]);
            i += len - 1;
        }
        return bytes.ToArray();
    }

    private protected override void EncodeText(ReadOnlySpan<char> fragment, bool afterSpecial, List<int> output)
    {
        var words = BpePreTokenizer.Split(fragment, Vocab.PreTokenizer);
        var queue = new PriorityQueue<MergeCandidate, (int, int)>(MergeOrder<int>.Ascending);
        char[] keyBuf = new char[64];
        foreach (var (start, length) in words)
        {
            // The word's UTF-8 bytes as byte characters: one char per byte.
            var word = fragment.Slice(start, length);
            byte[] utf8 = Encoding.UTF8.GetBytes(word.ToArray());
            var text = new char[utf8.Length];
            for (int i = 0; i < utf8.Length; i++) text[i] = ByteLevelMap.ByteToChar[utf8[i]];
            if (text.Length == 0) continue;

            if (Vocab.IgnoreMerges)
            {
                int whole = Vocab.Find(text);
                if (whole >= 0)
                {
                    output.Add(whole);
                    continue;
                }
            }

            var syms = new MergeSymbol[text.Length];
            for (int i = 0; i < text.Length; i++)
                syms[i] = new MergeSymbol { Start = i, Length = 1, Prev = i - 1, Next = i + 1 < text.Length ? i + 1 : -1 };

            queue.Clear();
            for (int i = 1; i < syms.Length; i++) TryAddBigram(text, syms, queue, ref keyBuf, i - 1, i);

            while (queue.TryDequeue(out var bg, out _))
            {
                ref var left = ref syms[bg.Left];
                ref var right = ref syms[bg.Right];
                if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bg.Length) continue; // stale
                left.Length += right.Length;
                right.Length = 0;
                left.Next = right.Next;
                if (right.Next >= 0) syms[right.Next].Prev = bg.Left;
                TryAddBigram(text, syms, queue, ref keyBuf, left.Prev, bg.Left);
                TryAddBigram(text, syms, queue, ref keyBuf, bg.Left, left.Next);
            }

            for (int i = 0; i != -1; i = syms[i].Next)
            {
                var piece = text.AsSpan(syms[i].Start, syms[i].Length);
                int id = Vocab.Find(piece);
                if (id >= 0)
                {
                    output.Add(id);
                    continue;
                }
                for (int j = 0; j < piece.Length; j++)
                {
                    int b = Vocab.Find(piece.Slice(j, 1));
                    if (b >= 0) output.Add(b);
                }
            }
        }
    }

    private void TryAddBigram(char[] text, MergeSymbol[] syms, PriorityQueue<MergeCandidate, (int, int)> queue, ref char[] keyBuf, int left, int right)
    {
        if (left < 0 || right < 0) return;
        int ll = syms[left].Length, rl = syms[right].Length;
        if (ll + rl + 1 > keyBuf.Length) keyBuf = new char[Math.Max(keyBuf.Length * 2, ll + rl + 1)];
        keyBuf[0] = (char)ll;
        text.AsSpan(syms[left].Start, ll + rl).CopyTo(keyBuf.AsSpan(1)); // left and right are adjacent in the text
        if (!_ranksBySpan.TryGetValue(keyBuf.AsSpan(0, ll + rl + 1), out int rank)) return;
        queue.Enqueue(new MergeCandidate(left, right, ll + rl), (rank, left));
    }
}
