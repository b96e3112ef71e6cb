using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.X64Image;

/// <summary>
/// Issue 14.1: dist/linux-x64/edgellm is one file that runs on every x86-64-v3 CPU and runs its embedded x86-64-v4
/// (AVX-512) image where the CPU has AVX-512 F/BW/CD/DQ/VL. The choice is checked against /proc/cpuinfo on this host,
/// against an AVX2-only CPU model under qemu-x86_64 (Haswell: AVX2, FMA, no AVX-512, no AVX-VNNI), and against
/// EDGELLM_ISA=avx2; every image must print the stories260K reference story.
/// </summary>
public class X64ImageTests
{
    private static readonly Dictionary<string, string> NoEnv = [];

    [X64LinuxFact]
    public void HostRunsTheImageItsCpuSupports()
    {
        var r = NativeRun.Run(NoEnv, NativeRun.Edgellm, "--version");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("", r.Stderr);
        if (NativeRun.HostHasAvx512())
        {
            Assert.Contains("baseline x86-64-v4; x86-64-v4 image (AVX-512 kernels), embedded;", r.Stdout);
            Assert.Contains("AVX-512BW", r.Stdout);
            Assert.Contains("Vector512=yes", r.Stdout);
        }
        else
        {
            Assert.Contains("baseline x86-64-v3; x86-64-v3 image (AVX2 kernels): the CPU has no AVX-512", r.Stdout);
            Assert.Contains("Vector512=no", r.Stdout);
        }
    }

    [Avx512HostFact]
    public void Avx512ImagePrintsTheReferenceStoryAndPassesExitCodesAndLeavesNoFile()
    {
        string tmp = Directory.CreateTempSubdirectory("edgellm-image-").FullName;
        try
        {
            var env = new Dictionary<string, string> { ["TMPDIR"] = tmp };
            var r = NativeRun.Run(env, NativeRun.Edgellm, "run", "-n", "32", "--temp", "0", "-m", TestPaths.Stories260K);
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal(CommandTests.ReferenceText(32) + "\n", r.Stdout);
            var bench = NativeRun.Run(env, NativeRun.Edgellm, "bench", "-m", TestPaths.Stories260K, "-p", "8", "-n", "4", "-r", "1");
            Assert.True(bench.ExitCode == 0, bench.Stderr);
            Assert.Contains("x86-64-v4 image (AVX-512 kernels), embedded", bench.Stdout);
            // A usage error inside the embedded image: its exit code and stderr come back unchanged.
            var bad = NativeRun.Run(env, NativeRun.Edgellm, "no-such-command");
            Assert.Equal(2, bad.ExitCode);
            Assert.Contains("unknown command 'no-such-command'", bad.Stderr);
            Assert.Empty(Directory.EnumerateFileSystemEntries(tmp));   // loaded from memory: nothing written to the temp folder
        }
        finally { Directory.Delete(tmp, recursive: true); }
    }

    [X64LinuxFact]
    public void EdgellmIsaAvx2ForcesTheX86_64V3Image()
    {
        var env = new Dictionary<string, string> { ["EDGELLM_ISA"] = "avx2" };
        var v = NativeRun.Run(env, NativeRun.Edgellm, "--version");
        Assert.True(v.ExitCode == 0, v.Stderr);
        Assert.Contains("baseline x86-64-v3; x86-64-v3 image (AVX2 kernels): EDGELLM_ISA=avx2;", v.Stdout);
        Assert.Contains("Vector512=no", v.Stdout);
        var r = NativeRun.Run(env, NativeRun.Edgellm, "run", "-n", "32", "--temp", "0", "-m", TestPaths.Stories260K);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(CommandTests.ReferenceText(32) + "\n", r.Stdout);
    }

    [QemuX64Fact]
    public void SameFileOnAnAvx2OnlyCpuUnderQemuRunsTheX86_64V3Image()
    {
        string? qemu = NativeRun.QemuX64();
        Assert.True(qemu is not null, "qemu-x86_64-static is missing but EDGELLM_REQUIRE_QEMU=1 (.ci/run installs qemu-user-static)");
        var env = new Dictionary<string, string> { ["QEMU_CPU"] = "Haswell" };
        var v = NativeRun.Run(env, qemu!, NativeRun.Edgellm, "--version");
        Assert.True(v.ExitCode == 0, v.Stderr);
        Assert.Contains("baseline x86-64-v3; x86-64-v3 image (AVX2 kernels): the CPU has no AVX-512 F/DQ/CD/BW/VL;", v.Stdout);
        Assert.Contains("AVX2 FMA Vector512=no", v.Stdout);   // Haswell: no AVX-VNNI either
        var r = NativeRun.Run(env, qemu!, NativeRun.Edgellm, "run", "-n", "32", "--temp", "0", "-t", "1", "-m", TestPaths.Stories260K);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(CommandTests.ReferenceText(32) + "\n", r.Stdout);
    }

    // The loader's fallbacks, in a private mount namespace: with /proc hidden (no /proc/self/fd to dlopen the memfd
    // through, no /proc/cpuinfo) the image comes from a temporary file that is unlinked at once; when the temp folder
    // is noexec as well, nothing can be loaded and the AVX2 image runs after one warning line.

    [MountNamespaceAvx512Fact]
    public void WithoutProcTheImageLoadsFromATempFileThatIsGoneAfterwards()
    {
        string tmp = Directory.CreateTempSubdirectory("edgellm-image-").FullName;
        try
        {
            var r = NativeRun.Run(new Dictionary<string, string> { ["TMPDIR"] = tmp, ["PATH"] = NativeRun.SystemPath }, "/usr/bin/unshare", "-m", "/bin/sh", "-c",
                "mount -t tmpfs none /proc && exec \"$0\" run -n 8 --temp 0 -m \"$1\"", NativeRun.Edgellm, TestPaths.Stories260K);
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal(CommandTests.ReferenceText(8) + "\n", r.Stdout);
            Assert.DoesNotContain("warning", r.Stderr);
            var v = NativeRun.Run(new Dictionary<string, string> { ["TMPDIR"] = tmp, ["PATH"] = NativeRun.SystemPath }, "/usr/bin/unshare", "-m", "/bin/sh", "-c",
                "mount -t tmpfs none /proc && exec \"$0\" --version", NativeRun.Edgellm);
            Assert.True(v.ExitCode == 0, v.Stderr);
            Assert.Contains("x86-64-v4 image (AVX-512 kernels), embedded", v.Stdout);
            Assert.Empty(Directory.EnumerateFileSystemEntries(tmp));
        }
        finally { Directory.Delete(tmp, recursive: true); }
    }

    [MountNamespaceAvx512Fact]
    public void WhenNoCopyCanBeLoadedOneWarningAndTheAvx2ImageRuns()
    {
        string tmp = Directory.CreateTempSubdirectory("edgellm-image-").FullName;
        try
        {
            var r = NativeRun.Run(new Dictionary<string, string> { ["TMPDIR"] = tmp, ["PATH"] = NativeRun.SystemPath }, "/usr/bin/unshare", "-m", "/bin/sh", "-c",
                "mount -t tmpfs none /proc && mount -t tmpfs -o noexec none \"$TMPDIR\" || exit 99; \"$0\" run -n 8 --temp 0 -m \"$1\"; rc=$?; echo \"left in TMPDIR: $(ls -A \"$TMPDIR\" | wc -l)\" >&2; exit $rc",
                NativeRun.Edgellm, TestPaths.Stories260K);
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal(CommandTests.ReferenceText(8) + "\n", r.Stdout);
            string[] warnings = r.Stderr.Split('\n').Where(l => l.Contains("warning: the AVX-512 image did not load", StringComparison.Ordinal)).ToArray();
            Assert.Single(warnings);
            Assert.StartsWith("edgellm: warning: the AVX-512 image did not load (", warnings[0]);
            Assert.EndsWith("running the x86-64-v3 (AVX2) image", warnings[0].TrimEnd());
            Assert.Contains("left in TMPDIR: 0\n", r.Stderr);   // the noexec folder, seen from inside the namespace
        }
        finally { Directory.Delete(tmp, recursive: true); }
    }
}
