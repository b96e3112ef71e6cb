using System.Runtime.InteropServices;
using EdgeLlm.Convert;
using EdgeLlm.IO;

// Ctrl-C, SIGTERM and SIGHUP cancel the conversion cleanly (the partial output is deleted); a second Ctrl-C kills
// the process.
// (POSIX signal registrations, not Console.CancelKeyPress, which opens Console.Out and fails when stdout is closed.)
using var cts = new CancellationTokenSource();
void Stop(PosixSignalContext c)
{
    if (c.Signal == PosixSignal.SIGINT && cts.IsCancellationRequested) return; // second Ctrl-C: default action
    c.Cancel = true;
    cts.Cancel();
}
using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, Stop);
// A file-size limit (ulimit -f, systemd LimitFSIZE) raises SIGXFSZ (25 on Linux) on the write that crosses it, whose
// default action kills the process and leaves OUTPUT.partial behind; handled, the write fails with EFBIG instead and
// the converter deletes the partial file and reports it in one line, as for a full disk.
using var fileSize = PosixSignalRegistration.Create((PosixSignal)25, c => c.Cancel = true);
return StandardStreams.Run("edgellm-convert", (stdout, stderr, _) =>
    ConvertCli.Execute(args, stdout, stderr, !Console.IsErrorRedirected && StandardStreams.IsUsable(2, write: true), cts.Token));
