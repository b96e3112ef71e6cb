using EdgeLlm.Cli;
using EdgeLlm.IO;

// The published linux-x64 binary carries an AVX-512 (x86-64-v4) image of this program; on a CPU that has AVX-512 it
// runs the command line there (ImageSelection).
// SIGXFSZ taken first: under a file-size limit (ulimit -f) a write past it fails with EFBIG and is reported in one
// line (FileSizeLimit), instead of the signal killing the process; that includes writing the AVX-512 image into its
// memfd, which then falls back to this image.
FileSizeLimit.Handle(); // for the whole process (see FileSizeLimit.Handle)
if (ImageSelection.TryRunEmbedded(args, out int embeddedExit)) return embeddedExit;
return StandardStreams.Run("edgellm", (stdout, stderr, stdin) => EdgeLlmCli.Execute(args, stdout, stderr, stdin, Terminal.Detect()));
