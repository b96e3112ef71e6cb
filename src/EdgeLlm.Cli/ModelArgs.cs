namespace EdgeLlm.Cli;

/// <summary>`edgellm CMD MODEL`: the model given as a positional argument instead of -m.</summary>
public static class ModelArgs
{
    /// <summary>
    /// A first positional argument is the model (as -m) when -m is not given; any other is an error. Commands whose
    /// positionals may be text (run) use <see cref="TakeModel"/> instead.
    /// </summary>
    public static void ModelPositional(this CliArgs args)
    {
        if (args.Positionals.Count > 0 && !args.Has("-m"))
        {
            args.Set("-m", args.Positionals[0]);
            args.Positionals.RemoveAt(0);
        }
        args.NoPositionals();
    }

    /// <summary>
    /// Takes the first positional argument as the model (as -m) when -m is not given and it names one (an existing
    /// file, a *.gguf path, or a built-in model name); returns whether it did. What is left is text.
    /// </summary>
    public static bool TakeModel(this CliArgs args)
    {
        if (args.Positionals.Count == 0 || args.Has("-m") || !ModelPaths.LooksLikeModel(args.Positionals[0])) return false;
        args.Set("-m", args.Positionals[0]);
        args.Positionals.RemoveAt(0);
        return true;
    }
}
