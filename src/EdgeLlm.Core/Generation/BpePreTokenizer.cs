using System.Text;

namespace EdgeLlm.Generation;

/// <summary>
/// Splits text into the words that byte-level BPE merges within, by hand-written scanners over code points
/// that implement the split expressions llama.cpp uses per <c>tokenizer.ggml.pre</c> (GPT-2, Llama 3, Qwen 2,
/// SmolLM/StarCoder, GPT-4o, default), so no regex engine is needed, the scan is linear, and letters/numbers
/// outside the BMP are classified correctly. Character classes are Unicode's: \p{L} letters, \p{N} numbers,
/// \s White_Space, \p{P} punctuation (llama.cpp's unicode tables use the same categories).
/// </summary>
public static class BpePreTokenizer
{
    /// <summary>The words of <paramref name="text"/> as (start, length) ranges in UTF-16 chars, in order, covering the text.</summary>
    public static List<(int Start, int Length)> Split(ReadOnlySpan<char> text, PreTokenizerKind kind)
    {
        // Decode to code points, remembering where each starts in the char span.
        var cps = new int[text.Length];
        var at = new int[text.Length + 1];
        int n = 0;
        for (int i = 0; i < text.Length;)
        {
            if (Rune.DecodeFromUtf16(text[i..], out Rune r, out int used) != System.Buffers.OperationStatus.Done)
                r = Rune.ReplacementChar; // a lone surrogate counts as one "other" character
            at[n] = i;
            cps[n++] = r.Value;
            i += used;
        }
        at[n] = text.Length;

        var words = new List<(int, int)>();
        switch (kind)
        {
            case PreTokenizerKind.Gpt2:
                Gpt2(cps, 0, n, words);
                break;
            case PreTokenizerKind.Llama3:
                Llama3(cps, 0, n, maxDigits: 3, words);
                break;
            case PreTokenizerKind.Qwen2:
                Llama3(cps, 0, n, maxDigits: 1, words);
                break;
            case PreTokenizerKind.Gpt4o:
                Gpt4o(cps, 0, n, words);
                break;
            case PreTokenizerKind.SmolLm:
            {
                // llama.cpp's smollm/starcoder: every number character on its own, then the GPT-2 rule on each piece.
                var pieces = SplitEach(cps, [(0, n)], IsNumber);
                foreach (var (s, len) in pieces) Gpt2(cps, s, s + len, words);
                break;
            }
            case PreTokenizerKind.Default:
            {
                // llama.cpp's default: each stage splits every piece of the previous one, keeping matches and gaps.
                var pieces = new List<(int, int)> { (0, n) };
                pieces = SplitRuns(cps, pieces, cp => IsPunctuation(cp) || cp is '$' or '+' or '<' or '=' or '>' or '^' or '~' or '|');
                var next = new List<(int, int)>();
                foreach (var (s, len) in pieces) Gpt2(cps, s, s + len, next);
                pieces = SplitRuns(cps, next, IsNumber);
                words = SplitAsciiDigitTriples(cps, pieces);
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "no pre-tokenizer for this kind");
        }

        // Code point ranges -> char ranges.
        var result = new List<(int Start, int Length)>(words.Count);
        foreach (var (s, len) in words) result.Add((at[s], at[s + len] - at[s]));
        return result;
    }

    private static bool IsLetter(int cp) => Rune.IsLetter(new Rune(cp));
    private static bool IsNumber(int cp) => Rune.IsNumber(new Rune(cp));
    private static bool IsSpace(int cp) => Rune.IsWhiteSpace(new Rune(cp));
    private static bool IsPunctuation(int cp) => Rune.IsPunctuation(new Rune(cp));

    /// <summary>Neither whitespace, letter nor number: the [^\s\p{L}\p{N}] class.</summary>
    private static bool IsOther(int cp) => !IsSpace(cp) && !IsLetter(cp) && !IsNumber(cp);

    /// <summary>A contraction at <paramref name="pos"/> ('s 't 'm 'd 're 've 'll), its length or 0.</summary>
    private static int Contraction(int[] cps, int pos, int end, bool ignoreCase)
    {
        if (cps[pos] != '\'' || pos + 1 >= end) return 0;
        int a = Lower(cps[pos + 1], ignoreCase);
        if (a is 's' or 't' or 'm' or 'd') return 2;
        if (pos + 2 >= end) return 0;
        int b = Lower(cps[pos + 2], ignoreCase);
        return (a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l') ? 3 : 0;
    }

    private static int Lower(int cp, bool ignoreCase) => ignoreCase && cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;

    /// <summary>Length of the whitespace run starting at <paramref name="pos"/>.</summary>
    private static int SpaceRun(int[] cps, int pos, int end)
    {
        int i = pos;
        while (i < end && IsSpace(cps[i])) i++;
        return i - pos;
    }

    /// <summary>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ over cps[start..end).</summary>
    private static void Gpt2(int[] cps, int start, int end, List<(int, int)> words)
    {
        int pos = start;
        while (pos < end)
        {
            int len = Contraction(cps, pos, end, ignoreCase: false);
            if (len == 0)
            {
                // " ?X+" for X in letters, numbers, others: an optional leading space joins the run after it.
                int s = cps[pos] == ' ' && pos + 1 < end ? pos + 1 : pos;
                int c = cps[s];
                Func<int, bool>? cls = IsLetter(c) ? IsLetter : IsNumber(c) ? IsNumber : IsOther(c) ? IsOther : null;
                if (cls is not null)
                {
                    int i = s + 1;
                    while (i < end && cls(cps[i])) i++;
                    len = i - pos;
                }
                else
                {
                    // Whitespace: a run followed by non-space leaves its last character to the next word.
                    int ws = SpaceRun(cps, pos, end);
                    len = ws > 1 && pos + ws < end ? ws - 1 : ws;
                }
            }
            words.Add((pos, len));
            pos += len;
        }
    }

    /// <summary>
    /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    /// over cps[start..end); Qwen 2's rule is the same with \p{N} (<paramref name="maxDigits"/> 1).
    /// </summary>
    private static void Llama3(int[] cps, int start, int end, int maxDigits, List<(int, int)> words)
    {
        int pos = start;
        while (pos < end)
        {
            int c = cps[pos];
            int len = Contraction(cps, pos, end, ignoreCase: true);
            if (len > 0) { words.Add((pos, len)); pos += len; continue; }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if (c != '\r' && c != '\n' && !IsNumber(c) && (IsLetter(c) || (pos + 1 < end && IsLetter(cps[pos + 1]))))
            {
                int i = pos + 1;
                while (i < end && IsLetter(cps[i])) i++;
                words.Add((pos, i - pos));
                pos = i;
                continue;
            }

            // \p{N}{1,3} (Qwen 2: \p{N})
            if (IsNumber(c))
            {
                int i = pos;
                while (i < end && i - pos < maxDigits && IsNumber(cps[i])) i++;
                words.Add((pos, i - pos));
                pos = i;
                continue;
            }

            // " ?[^\s\p{L}\p{N}]+[\r\n]*"
            int s = c == ' ' && pos + 1 < end ? pos + 1 : pos;
            if (IsOther(cps[s]))
            {
                int i = s + 1;
                while (i < end && IsOther(cps[i])) i++;
                while (i < end && cps[i] is '\r' or '\n') i++;
                words.Add((pos, i - pos));
                pos = i;
                continue;
            }

            // Whitespace: \s*[\r\n]+, else \s+(?!\S), else \s+.
            len = Whitespace(cps, pos, end);
            words.Add((pos, len));
            pos += len;
        }
    }

    private static bool IsAsciiUpper(int cp) => cp >= 'A' && cp <= 'Z';
    private static bool IsAsciiLower(int cp) => cp >= 'a' && cp <= 'z';

    /// <summary>
    /// llama.cpp's GPT-4o rule (Phi-4-mini, Llama 4) over cps[start..end), in the form llama.cpp runs it:
    /// [^\r\n\p{L}\p{N}]?((?=\p{L})[^a-z])*((?=\p{L})[^A-Z])+C?|[^\r\n\p{L}\p{N}]?((?=\p{L})[^a-z])+((?=\p{L})[^A-Z])*C?
    /// |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ where C is a case-insensitive contraction.
    /// The "upper" class is every letter but a-z and the "lower" class every letter but A-Z, so a letter outside
    /// ASCII belongs to both (llama.cpp's rewrite of the original \p{Lu}/\p{Ll} classes).
    /// </summary>
    private static void Gpt4o(int[] cps, int start, int end, List<(int, int)> words)
    {
        int pos = start;
        while (pos < end)
        {
            int c = cps[pos];
            // Letters with an optional leading character that is neither a line break, letter nor number.
            int s = -1;
            if (IsLetter(c)) s = pos;
            else if (c != '\r' && c != '\n' && !IsNumber(c) && pos + 1 < end && IsLetter(cps[pos + 1])) s = pos + 1;
            if (s >= 0)
            {
                // First form: "upper"* greedy, then "lower"+ greedy; backtracking gives the end computed here.
                // Every scan stays inside the word it returns, so the whole split is linear.
                int k = s;
                while (k < end && IsLetter(cps[k]) && !IsAsciiLower(cps[k])) k++;
                int stop;
                if (k < end && IsAsciiLower(cps[k]))
                {
                    stop = k;
                    while (stop < end && IsLetter(cps[stop]) && !IsAsciiUpper(cps[stop])) stop++;
                }
                else
                {
                    // No a-z before the run ends at k: the "lower"+ part is the last letter that is not A-Z,
                    // if any; with none the second form takes the whole run of A-Z.
                    int j = k - 1;
                    while (j >= s && IsAsciiUpper(cps[j])) j--;
                    stop = j >= s ? j + 1 : k;
                }
                if (stop < end) stop += Contraction(cps, stop, end, ignoreCase: true);
                words.Add((pos, stop - pos));
                pos = stop;
                continue;
            }

            if (IsNumber(c))
            {
                int i = pos;
                while (i < end && i - pos < 3 && IsNumber(cps[i])) i++;
                words.Add((pos, i - pos));
                pos = i;
                continue;
            }

            // " ?[^\s\p{L}\p{N}]+[\r\n/]*"
            int o = c == ' ' && pos + 1 < end ? pos + 1 : pos;
            if (IsOther(cps[o]))
            {
                int i = o + 1;
                while (i < end && IsOther(cps[i])) i++;
                while (i < end && cps[i] is '\r' or '\n' or '/') i++;
                words.Add((pos, i - pos));
                pos = i;
                continue;
            }

            int len = Whitespace(cps, pos, end);
            words.Add((pos, len));
            pos += len;
        }
    }

    /// <summary>\s*[\r\n]+ (up to the last line break of the run), else \s+(?!\S), else \s+, at a whitespace character.</summary>
    private static int Whitespace(int[] cps, int pos, int end)
    {
        int ws = SpaceRun(cps, pos, end);
        int lastBreak = -1;
        for (int i = pos; i < pos + ws; i++)
            if (cps[i] is '\r' or '\n') lastBreak = i;
        if (lastBreak >= 0) return lastBreak + 1 - pos;
        return ws > 1 && pos + ws < end ? ws - 1 : ws;
    }

    /// <summary>Splits every piece so that each character of the class stands alone (the gaps stay whole).</summary>
    private static List<(int, int)> SplitEach(int[] cps, List<(int, int)> pieces, Func<int, bool> inClass)
    {
        var result = new List<(int, int)>(pieces.Count);
        foreach (var (s, len) in pieces)
        {
            int end = s + len, gap = s;
            for (int i = s; i < end; i++)
            {
                if (!inClass(cps[i])) continue;
                if (i > gap) result.Add((gap, i - gap));
                result.Add((i, 1));
                gap = i + 1;
            }
            if (end > gap) result.Add((gap, end - gap));
        }
        return result;
    }

    /// <summary>Splits every piece into maximal runs of characters in the class and the gaps between them.</summary>
    private static List<(int, int)> SplitRuns(int[] cps, List<(int, int)> pieces, Func<int, bool> inClass)
    {
        var result = new List<(int, int)>(pieces.Count);
        foreach (var (s, len) in pieces)
        {
            int end = s + len, i = s;
            while (i < end)
            {
                int j = i;
                bool run = inClass(cps[i]);
                while (j < end && inClass(cps[j]) == run) j++;
                result.Add((i, j - i));
                i = j;
            }
        }
        return result;
    }

    /// <summary>[0-9][0-9][0-9]: splits every piece into leftmost non-overlapping ASCII digit triples and the gaps.</summary>
    private static List<(int, int)> SplitAsciiDigitTriples(int[] cps, List<(int, int)> pieces)
    {
        static bool Digit(int cp) => cp >= '0' && cp <= '9';
        var result = new List<(int, int)>(pieces.Count);
        foreach (var (s, len) in pieces)
        {
            int end = s + len, gap = s, i = s;
            while (i + 2 < end)
            {
                if (Digit(cps[i]) && Digit(cps[i + 1]) && Digit(cps[i + 2]))
                {
                    if (i > gap) result.Add((gap, i - gap));
                    result.Add((i, 3));
                    i += 3;
                    gap = i;
                }
                else i++;
            }
            if (end > gap) result.Add((gap, end - gap));
        }
        return result;
    }
}
