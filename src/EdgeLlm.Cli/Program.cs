using EdgeLlm.Cli;

return EdgeLlmCli.Execute(args, Console.Out, Console.Error);
