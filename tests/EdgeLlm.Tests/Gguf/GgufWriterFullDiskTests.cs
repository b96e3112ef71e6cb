using System.Diagnostics;
using EdgeLlm.Gguf;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Gguf;

/// <summary>
/// GgufWriter on a really full disk: a 64 KiB tmpfs mounted for the test. Mounting needs root (and a kernel
/// that allows it, e.g. not an unprivileged container), which CI may not have. xunit 2.9 has no dynamic skip,
/// so when the mount fails the test returns early and passes without asserting anything; the reason is
/// written to the test output. <see cref="GgufWriterTests.DiskFullMidwayIsAnIOExceptionAndLeavesNoFile"/>
/// covers the same cleanup everywhere with a simulated ENOSPC.
/// </summary>
public class GgufWriterFullDiskTests(ITestOutputHelper output)
{
    [Fact]
    public void WriteToAFullTmpfsIsTheOneLineErrorAndLeavesNoFile()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("mountpoint"))!;
        string? why = OperatingSystem.IsLinux() ? Run("mount", $"-t tmpfs -o size=64k tmpfs {dir}") : "not Linux";
        if (why is not null)
        {
            output.WriteLine($"SKIPPED: cannot mount a 64 KiB tmpfs here ({why}); the simulated test covers the behaviour");
            return;
        }
        try
        {
            // control: a small file fits
            string small = Path.Combine(dir, "small.gguf");
            new GgufWriter().AddTensor("w", GgmlType.F32, [1024], new byte[4096]).Write(small);
            using (var f = GgufFile.Open(small)) Assert.Single(f.Tensors);
            File.Delete(small);

            // 256 KiB of tensor data cannot fit in 64 KiB
            string path = Path.Combine(dir, "big.gguf");
            var w = new GgufWriter().AddTensor("w", GgmlType.F32, [256, 256], new byte[256 * 256 * 4]);
            // the house one-line error (EdgeLlm.IO.OutputFile): the file the caller named and the cause, nothing left
            var e = Assert.Throws<EdgeLlm.IO.OutputWriteException>(() => w.Write(path));
            output.WriteLine($"got {e.GetType().Name}: {e.Message}");
            Assert.Equal($"{path}: the disk is full (no space left on device); nothing written", e.Message);
            Assert.False(File.Exists(path));
            Assert.False(File.Exists(path + ".partial"));
            Assert.Empty(Directory.GetFileSystemEntries(dir));
        }
        finally
        {
            if (Run("umount", dir) is not null) Run("umount", $"-l {dir}");
        }
    }

    /// <summary>Runs a command; null on success, else a one-line reason.</summary>
    private static string? Run(string exe, string args)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(exe, args) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false })!;
            string err = p.StandardError.ReadToEnd();
            p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(10_000)) { p.Kill(); return $"{exe} timed out"; }
            return p.ExitCode == 0 ? null : $"{exe} exited {p.ExitCode}: {err.Trim()}";
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return $"{exe}: {e.Message}";
        }
    }
}
