namespace EdgeLlm.CommandLine;

/// <summary>A command-line mistake: printed as one line with a pointer to --help (<see cref="Line"/>), exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message)
{
    /// <summary>The exit code of a command-line mistake, in all three tools.</summary>
    public const int ExitCode = 2;

    /// <summary>"PROGRAM: MESSAGE (see 'PROGRAM --help')", e.g. program "edgellm run" or "edgellm-convert".</summary>
    public string Line(string program) => $"{program}: {Message} (see '{program} --help')";
}
