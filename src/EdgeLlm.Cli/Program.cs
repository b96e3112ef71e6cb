using EdgeLlm.Cli;
using EdgeLlm.IO;

// The published linux-x64 binary carries an AVX-512 (x86-64-v4) image of this program; on a CPU that has AVX-512 it
// runs the command line there (ImageSelection).
if (ImageSelection.TryRunEmbedded(args, out int embeddedExit)) return embeddedExit;
return StandardStreams.Run("edgellm", (stdout, stderr, stdin) => EdgeLlmCli.Execute(args, stdout, stderr, stdin, Terminal.Detect()));
