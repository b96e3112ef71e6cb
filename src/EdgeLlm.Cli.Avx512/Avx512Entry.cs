using System.Runtime.InteropServices;
using EdgeLlm.IO;

namespace EdgeLlm.Cli;

/// <summary>
/// The entry point of the x86-64-v4 (AVX-512) image: the whole CLI built as a Native AOT shared library, embedded in
/// the linux-x64 executable and called by <see cref="ImageSelection.TryRunEmbedded"/> with the command line.
/// </summary>
public static unsafe class Avx512Entry
{
    [UnmanagedCallersOnly(EntryPoint = ImageSelection.EntryPoint)]
    public static int Main(int argc, byte** argv)
    {
        ImageSelection.InEmbeddedImage = true;
        FileSizeLimit.Handle(); // this runtime's own signal handling, for the whole process (see Program.cs)
        string[] args = ImageSelection.ArgsFrom(argc, argv);
        return StandardStreams.Run("edgellm", (stdout, stderr, stdin) => EdgeLlmCli.Execute(args, stdout, stderr, stdin, Terminal.Detect()));
    }
}
