using EdgeLlm.Convert;

// Ctrl-C cancels the conversion cleanly (the partial output is deleted); a second Ctrl-C kills the process.
using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (cts.IsCancellationRequested) return;
    e.Cancel = true;
    cts.Cancel();
};
return ConvertCli.Execute(args, Console.Out, Console.Error, !Console.IsErrorRedirected, cts.Token);
