using System.Runtime.InteropServices;
using EdgeLlm.Convert;
using EdgeLlm.IO;

// A file-size limit (ulimit -f, systemd LimitFSIZE) raises SIGXFSZ on the write that crosses it, whose default action
// kills the process and leaves OUTPUT.partial behind; handled, the write fails with EFBIG instead and the converter
// deletes the partial file and reports it in one line, as for a full disk. The registration is held for the whole
// process, never disposed: with a `using` here, a conversion that failed on its write returned and dropped the
// registration before the runtime's signal thread had dispatched the pending SIGXFSZ, which then took its default
// action (exit 153 after the one-line error; seen once in CI on a loaded machine).
FileSizeLimit.Handle();
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
return StandardStreams.Run("edgellm-convert", (stdout, stderr, _) =>
    ConvertCli.Execute(args, stdout, stderr, !Console.IsErrorRedirected && StandardStreams.IsUsable(2, write: true), cts.Token));
