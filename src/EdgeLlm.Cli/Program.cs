using EdgeLlm.Cli;
using EdgeLlm.IO;

return StandardStreams.Run("edgellm", (stdout, stderr, stdin) => EdgeLlmCli.Execute(args, stdout, stderr, stdin, Terminal.Detect()));
