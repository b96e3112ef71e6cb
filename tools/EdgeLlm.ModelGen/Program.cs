// SIGXFSZ taken: under a file-size limit (ulimit -f) the write that crosses it fails with EFBIG, which the OutputFile
// reports in one line (deleting FILE.partial), instead of the signal killing the process and leaving FILE.partial behind.
EdgeLlm.IO.FileSizeLimit.Handle(); // for the whole process (see FileSizeLimit.Handle)
return EdgeLlm.ModelGen.ModelGenCli.Execute(args, Console.Out, Console.Error);
