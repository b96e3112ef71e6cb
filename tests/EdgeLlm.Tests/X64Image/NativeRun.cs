using System.Diagnostics;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.X64Image;

/// <summary>Runs a program (the published edgellm, or qemu with it) with exactly the environment given (env -i).</summary>
internal static class NativeRun
{
    public static CliRunner.Result Run(IReadOnlyDictionary<string, string> env, string program, params string[] args)
    {
        var psi = new ProcessStartInfo("/usr/bin/env") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot };
        psi.ArgumentList.Add("-i");
        foreach (var (name, value) in env) psi.ArgumentList.Add($"{name}={value}");
        psi.ArgumentList.Add(program);
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) { p.Kill(true); throw new TimeoutException($"{program} did not finish in 300 s"); }
        return new CliRunner.Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>The published binary, asserted present (tools/test.sh publishes it).</summary>
    public static string Edgellm
    {
        get
        {
            Assert.True(File.Exists(CliRunner.PublishedBinary), $"{CliRunner.PublishedBinary} is missing: run tools/publish.sh linux-x64 (tools/test.sh does)");
            return CliRunner.PublishedBinary;
        }
    }

    /// <summary>
    /// The kernel's view of this CPU (/proc/cpuinfo flags), the reference the image choice is checked against: it lists
    /// avx512f/bw/cd/dq/vl only when the CPU has them and the OS saves their state.
    /// </summary>
    public static bool HostHasAvx512()
    {
        string flags = File.ReadLines("/proc/cpuinfo").First(l => l.StartsWith("flags", StringComparison.Ordinal));
        var set = flags[(flags.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        return new[] { "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl" }.All(set.Contains);
    }

    public static bool IsX64Linux =>
        OperatingSystem.IsLinux() && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64;

    public const string SystemPath = "/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>Whether `unshare -m` may mount a tmpfs here (the mount is private to that namespace).</summary>
    public static bool CanUnshareMounts()
    {
        if (!File.Exists("/usr/bin/unshare")) return false;
        string dir = Directory.CreateTempSubdirectory("edgellm-unshare-").FullName;
        try
        {
            var r = Run(new Dictionary<string, string> { ["PATH"] = SystemPath }, "/usr/bin/unshare", "-m", "/bin/sh", "-c", "mount -t tmpfs none \"$0\"", dir);
            return r.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>qemu-x86_64-static (or qemu-x86_64) on PATH, or null.</summary>
    public static string? QemuX64()
    {
        foreach (string name in new[] { "qemu-x86_64-static", "qemu-x86_64" })
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
                if (dir.Length > 0 && File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        return null;
    }
}

/// <summary>A fact about the published linux-x64 binary: skipped on other systems.</summary>
public sealed class X64LinuxFactAttribute : FactAttribute
{
    public X64LinuxFactAttribute()
    {
        if (!NativeRun.IsX64Linux) Skip = "the linux-x64 binary runs only on x64 Linux";
    }
}

/// <summary>A theory about the published linux-x64 binary: skipped on other systems.</summary>
public sealed class X64LinuxTheoryAttribute : TheoryAttribute
{
    public X64LinuxTheoryAttribute()
    {
        if (!NativeRun.IsX64Linux) Skip = "the linux-x64 binary runs only on x64 Linux";
    }
}

/// <summary>A fact that needs an AVX-512 host (/proc/cpuinfo), where the embedded x86-64-v4 image runs.</summary>
public sealed class Avx512HostFactAttribute : FactAttribute
{
    public Avx512HostFactAttribute()
    {
        if (!NativeRun.IsX64Linux) Skip = "the linux-x64 binary runs only on x64 Linux";
        else if (!NativeRun.HostHasAvx512()) Skip = "this CPU has no AVX-512: the embedded image is not used here (the qemu test covers the AVX2 side)";
    }
}

/// <summary>
/// A fact that runs the binary under qemu-x86_64: skipped where qemu is not installed, except under
/// EDGELLM_REQUIRE_QEMU=1 (.ci/run installs qemu-user-static), where the test runs and fails on the missing qemu.
/// </summary>
public sealed class QemuX64FactAttribute : FactAttribute
{
    public QemuX64FactAttribute()
    {
        if (!NativeRun.IsX64Linux) Skip = "the linux-x64 binary runs only on x64 Linux";
        else if (NativeRun.QemuX64() is null && Environment.GetEnvironmentVariable("EDGELLM_REQUIRE_QEMU") != "1")
            Skip = "qemu-x86_64-static is not installed (apt-get install qemu-user-static; .ci/run does)";
    }
}

/// <summary>
/// A fact that runs the binary in a private mount namespace (unshare -m, root) on an AVX-512 host, to hide /proc
/// or mount a noexec temp folder: skipped where that is not allowed (no root, a container without CAP_SYS_ADMIN).
/// </summary>
public sealed class MountNamespaceAvx512FactAttribute : FactAttribute
{
    public MountNamespaceAvx512FactAttribute()
    {
        if (!NativeRun.IsX64Linux) Skip = "the linux-x64 binary runs only on x64 Linux";
        else if (!NativeRun.HostHasAvx512()) Skip = "this CPU has no AVX-512: the embedded image is not loaded here";
        else if (!NativeRun.CanUnshareMounts()) Skip = "unshare -m with a tmpfs mount is not permitted here (needs root and CAP_SYS_ADMIN)";
    }
}
