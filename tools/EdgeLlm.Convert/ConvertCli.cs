namespace EdgeLlm.Convert;

/// <summary>Entry point of edgellm-convert (the converter issue fills it in).</summary>
public static class ConvertCli
{
    public static int Execute(string[] args, TextWriter stdout, TextWriter stderr)
    {
        stderr.WriteLine("edgellm-convert: not built yet");
        return 1;
    }
}
