using EdgeLlm.Generation;
using EdgeLlm.Gguf;

namespace EdgeLlm.Cli;

/// <summary>`edgellm tokenize`: the token ids of a text as one JSON array on one line.</summary>
public sealed class TokenizeCommand : Command
{
    private static readonly OptionSpec Prompt = new(["-p", "--prompt"], true, "TEXT", "text to tokenize");
    private static readonly OptionSpec File_ = new(["-f", "--file"], true, "FILE", "read the text from a file");
    private static readonly OptionSpec NoBos = new(["--no-bos"], false, null, "do not add the BOS token");
    private static readonly OptionSpec Special = new(["--parse-special"], false, null, "match control tokens written in the text (e.g. <s>)");
    private static readonly OptionSpec Pieces = new(["--show-pieces"], false, null, "print id and piece, one token per line");

    public override string Name => "tokenize";
    public override string Summary => "print the token ids of a text as a JSON array";
    public override string Usage => "tokenize [-m MODEL] -p TEXT [--no-bos]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, Prompt, File_, NoBos, Special, Pieces, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        string text = PromptText.Read(args, "-p", "-f", ctx.In) ?? throw new UsageException("give the text with -p TEXT or -f FILE");
        using var file = ModelPaths.Open(ModelPaths.Resolve(args.GetString("-m")));
        var tokenizer = Tokenizer.FromGguf(file);
        int[] ids = tokenizer.Encode(text, addBos: !args.Has("--no-bos"), parseSpecial: args.Has("--parse-special"));
        if (args.Has("--show-pieces"))
        {
            foreach (int id in ids)
                ctx.Out.WriteLine($"{id,6} '{System.Text.Encoding.UTF8.GetString(tokenizer.TokenBytes(id, renderSpecial: true))}'");
            return 0;
        }
        ctx.Out.WriteLine("[" + string.Join(", ", ids) + "]");
        return 0;
    }
}

/// <summary>The prompt of a command: -p TEXT or -f FILE (one of them), as given.</summary>
public static class PromptText
{
    public static string? Read(CliArgs args, string textOption, string fileOption, TextReader? stdin = null)
    {
        string? text = args.GetString(textOption);
        string? file = args.GetString(fileOption);
        if (text is not null && file is not null) throw new UsageException($"give either {textOption} or {fileOption}, not both");
        if (file is null) return text;
        if (file == "-" && stdin is not null) return FromStdin(stdin);
        if (Directory.Exists(file)) throw new FileNotFoundException($"{file}: the prompt file is a directory");
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: prompt file not found");
        return File.ReadAllText(file);
    }

    /// <summary>All of standard input as a prompt, less the one line break `echo` puts at its end.</summary>
    public static string FromStdin(TextReader stdin)
    {
        string s = stdin.ReadToEnd();
        if (s.EndsWith("\r\n", StringComparison.Ordinal)) return s[..^2];
        return s.EndsWith('\n') ? s[..^1] : s;
    }
}
