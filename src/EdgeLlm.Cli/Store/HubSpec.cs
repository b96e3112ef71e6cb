namespace EdgeLlm.Cli.Store;

/// <summary>A parsed `hf:ORG/REPO[:FILE|:QUANT]` reference.</summary>
public sealed record HubSpec(string Repo, string? File, string? Quant)
{
    public const string Prefix = "hf:";

    /// <summary>Parses the argument of `edgellm pull`; a mistake is a <see cref="UsageException"/>.</summary>
    public static HubSpec Parse(string text)
    {
        if (!text.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
            throw new UsageException($"'{text}' is not a model reference: expected hf:ORG/REPO[:FILE|:QUANT]");
        string rest = text[Prefix.Length..];
        string repo = rest;
        string? selector = null;
        int colon = rest.IndexOf(':');
        if (colon >= 0) { repo = rest[..colon]; selector = rest[(colon + 1)..]; }
        string[] parts = repo.Split('/');
        if (parts.Length != 2 || !IsRepoPart(parts[0]) || !IsRepoPart(parts[1]))
            throw new UsageException($"'{text}': the repository must be ORG/REPO (letters, digits, '.', '_', '-')");
        if (selector is null) return new HubSpec(repo, null, null);
        if (selector.Length == 0 || selector.Contains("..", StringComparison.Ordinal) || selector.StartsWith('/') || selector.Contains('\\')
            || selector.Contains('?') || selector.Contains('#'))
            throw new UsageException($"'{text}': '{selector}' is not a file name or quantization");
        bool isFile = selector.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || selector.Contains('/');
        return isFile ? new HubSpec(repo, selector, null) : new HubSpec(repo, null, selector);
    }

    private static bool IsRepoPart(string s)
    {
        if (s.Length is 0 or > 96 || s is "." or "..") return false;
        foreach (char c in s)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')) return false;
        return true;
    }

    /// <summary>
    /// The one .gguf among the repository's files that this spec selects: the named file, the file whose name holds
    /// the quantization as a whole word (case-insensitive), or the only .gguf there is.
    /// </summary>
    public string Pick(IReadOnlyList<string> files)
    {
        var ggufs = new List<string>();
        foreach (string f in files) if (f.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) ggufs.Add(f);
        if (File is not null)
        {
            foreach (string f in files) if (f == File) return f;
            throw new EdgeLlmException($"hf:{Repo} has no file '{File}'{Candidates(ggufs)}");
        }
        if (ggufs.Count == 0) throw new EdgeLlmException($"hf:{Repo} has no .gguf file (convert its checkpoint with tools/EdgeLlm.Convert, or pick a GGUF repository)");
        if (Quant is null)
        {
            if (ggufs.Count == 1) return ggufs[0];
            throw new EdgeLlmException($"hf:{Repo} has {ggufs.Count} .gguf files: name one, e.g. hf:{Repo}:{QuantOf(ggufs[0]) ?? ggufs[0]}{Candidates(ggufs)}");
        }
        var hits = new List<string>();
        foreach (string f in ggufs) if (HasWord(Path.GetFileName(f)[..^5], Quant)) hits.Add(f);
        if (hits.Count == 1) return hits[0];
        if (hits.Count == 0) throw new EdgeLlmException($"hf:{Repo} has no .gguf file for '{Quant}'{Candidates(ggufs)}");
        throw new EdgeLlmException($"hf:{Repo}: '{Quant}' matches {hits.Count} files: name one with hf:{Repo}:FILE{Candidates(hits)}");
    }

    private static string Candidates(List<string> files)
    {
        if (files.Count == 0) return "";
        const int Max = 12;
        string shown = string.Join(", ", files.Count > Max ? files.GetRange(0, Max) : files);
        return $" (candidates: {shown}{(files.Count > Max ? $", and {files.Count - Max} more" : "")})";
    }

    /// <summary>
    /// True when <paramref name="word"/> occurs in <paramref name="stem"/> after the start or '.', '-', '_' and before the end
    /// or '.', '-' (not '_', so Q4_K does not pick Q4_K_M).
    /// </summary>
    internal static bool HasWord(string stem, string word)
    {
        for (int i = stem.IndexOf(word, StringComparison.OrdinalIgnoreCase); i >= 0;
             i = i + 1 < stem.Length ? stem.IndexOf(word, i + 1, StringComparison.OrdinalIgnoreCase) : -1)
        {
            bool startOk = i == 0 || stem[i - 1] is '.' or '-' or '_';
            int end = i + word.Length;
            bool endOk = end == stem.Length || stem[end] is '.' or '-';
            if (startOk && endOk) return true;
        }
        return false;
    }

    /// <summary>The last dot- or dash-separated part of a file's stem (the quantization by the usual naming), or null.</summary>
    private static string? QuantOf(string file)
    {
        string stem = Path.GetFileName(file);
        stem = stem[..^5];
        int cut = Math.Max(stem.LastIndexOf('.'), stem.LastIndexOf('-'));
        return cut >= 0 && cut + 1 < stem.Length ? stem[(cut + 1)..] : null;
    }
}
