return EdgeLlm.ModelGen.ModelGenCli.Execute(args, Console.Out, Console.Error);
