return EdgeLlm.Convert.ConvertCli.Execute(args, Console.Out, Console.Error);
