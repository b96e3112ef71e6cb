using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;

namespace EdgeLlm.Tests.Release;

/// <summary>
/// Issue 16.1: tools/release.sh and packaging/install.sh, on stand-in binaries (shell scripts that print their build's
/// name), so they run in seconds; tools/test-release.sh does the same with the published binaries in CI.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class ReleaseScriptTests
{
    private sealed record Row(string Name, string Rid, string Isa, string Floor);

    /// <summary>rid-matrix.json, read here independently of the scripts.</summary>
    private static Row[] Matrix()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "rid-matrix.json")));
        return doc.RootElement.GetProperty("binaries").EnumerateArray().Select(b => new Row(
            b.GetProperty("name").GetString()!, b.GetProperty("rid").GetString()!,
            b.TryGetProperty("instructionSet", out var i) && i.GetString() is { Length: > 0 } isa ? isa : "default",
            b.TryGetProperty("glibcFloor", out var g) && g.GetString() is { Length: > 0 } f ? f : "-")).ToArray();
    }

    private static string Version()
    {
        string props = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "Directory.Build.props"));
        return System.Text.RegularExpressions.Regex.Match(props, "<Version>([^<]+)</Version>").Groups[1].Value;
    }

    private static (int Code, string Out, string Err) Sh(string file, string? cwd, Dictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = cwd ?? TestPaths.RepoRoot };
        foreach (string a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000), $"{file} timed out");
        return (p.ExitCode, o.Result, e.Result);
    }

    /// <summary>A release built by tools/release.sh from stand-in binaries: (folder, version).</summary>
    private static string FakeRelease()
    {
        string root = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        foreach (var row in Matrix())
        {
            string d = Path.Combine(root, "dist", row.Name);
            Directory.CreateDirectory(d);
            foreach (string b in new[] { "edgellm", "edgellm-convert" })
            {
                File.WriteAllText(Path.Combine(d, b), $"#!/bin/sh\necho \"{b} {row.Name} $*\"\n");
                File.SetUnixFileMode(Path.Combine(d, b), (UnixFileMode)0b111_101_101);
            }
        }
        string rel = Path.Combine(root, "release");
        var r = Sh(Path.Combine(TestPaths.RepoRoot, "tools", "release.sh"), null, null, "--dist", Path.Combine(root, "dist"), "--out", rel);
        Assert.True(r.Code == 0, r.Err);
        return rel;
    }

    private static string Sha256(string path) => System.Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    [Fact]
    public void ReleaseBuildsOneArchivePerMatrixRowWithChecksums()
    {
        string rel = FakeRelease();
        string v = Version();
        var rows = Matrix();
        // MANIFEST: one line per row, in matrix order.
        var manifest = File.ReadAllLines(Path.Combine(rel, "MANIFEST"));
        Assert.Equal(rows.Length, manifest.Length);
        for (int i = 0; i < rows.Length; i++)
        {
            string arch = rows[i].Rid == "linux-x64" ? "x86_64" : "aarch64";
            Assert.Equal($"edgellm-{v}-{rows[i].Name}.tar.gz {rows[i].Name} {rows[i].Rid} {arch} {rows[i].Isa} {rows[i].Floor}", manifest[i]);
        }
        // SHA256SUMS lists every file, each with its real digest.
        var sums = File.ReadAllLines(Path.Combine(rel, "SHA256SUMS")).Select(l => l.Split("  ")).ToDictionary(p => p[1], p => p[0]);
        string[] files = Directory.GetFiles(rel).Select(p => Path.GetFileName(p)).Where(f => f != "SHA256SUMS").Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(files, sums.Keys.Order(StringComparer.Ordinal).ToArray());
        foreach (string f in files) Assert.Equal(Sha256(Path.Combine(rel, f)), sums[f]);
        // Each archive: the user binaries, LICENSE, README, the systemd unit and its environment file, install.sh.
        foreach (var row in rows)
        {
            string name = $"edgellm-{v}-{row.Name}";
            var entries = new Dictionary<string, (UnixFileMode Mode, string Text)>();
            using (var gz = new GZipStream(File.OpenRead(Path.Combine(rel, name + ".tar.gz")), CompressionMode.Decompress))
            using (var tar = new TarReader(gz))
                while (tar.GetNextEntry() is { } e)
                {
                    Assert.Equal(0, ((PosixTarEntry)e).Uid);
                    string text = e.DataStream is null ? "" : new StreamReader(e.DataStream).ReadToEnd();
                    entries[e.Name] = (e.Mode, text);
                }
            string[] expected = ["", "LICENSE", "README.md", "bin/", "bin/edgellm", "bin/edgellm-convert", "share/", "share/edgellm/",
                "share/edgellm/edgellm.env", "share/edgellm/edgellm.service", "share/edgellm/install.sh"];
            Assert.Equal(expected.Select(e => $"{name}/{e}").Order(StringComparer.Ordinal), entries.Keys.Order(StringComparer.Ordinal));
            Assert.Equal($"#!/bin/sh\necho \"edgellm {row.Name} $*\"\n", entries[$"{name}/bin/edgellm"].Text);
            Assert.True(entries[$"{name}/bin/edgellm"].Mode.HasFlag(UnixFileMode.UserExecute));
            Assert.Equal(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "LICENSE")), entries[$"{name}/LICENSE"].Text);
            Assert.Equal(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "packaging", "edgellm.service")), entries[$"{name}/share/edgellm/edgellm.service"].Text);
        }
    }

    [Fact]
    public void LicenseIsMitAndNamesTheBundledModel()
    {
        string license = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "LICENSE"));
        Assert.StartsWith("MIT License\n", license);
        Assert.Contains("stories260K", license);
        Assert.Contains("karpathy/llama2.c", license);
    }

    private static (int Code, string Out, string Err) Install(string rel, string prefix, Dictionary<string, string>? env, params string[] args) =>
        Sh("/bin/sh", null, env, [Path.Combine(rel, "install.sh"), "--prefix", prefix, .. args]);

    private static string NewPrefix() => Path.Combine(Path.GetDirectoryName(TestPaths.TempFile("x"))!, "prefix");

    private static readonly Dictionary<string, string> Avx2Host = new()
    {
        ["EDGELLM_INSTALL_CPUFLAGS"] = "fpu sse4_2 avx avx2 fma bmi1 bmi2 f16c movbe",
        ["EDGELLM_INSTALL_GLIBC"] = "2.36",
    };

    [Fact]
    public void InstallPicksTheBestFittingArchiveAndInstallsIt()
    {
        if (System.Runtime.InteropServices.RuntimeInformation.OSArchitecture != System.Runtime.InteropServices.Architecture.X64) return;
        string rel = FakeRelease();
        string v = Version();
        var rows = Matrix().Where(r => r.Rid == "linux-x64").ToArray();
        // Without AVX-512 the x86-64-v3 build (the baseline every x64 row meets or exceeds) is chosen.
        var baseline = rows.First(r => r.Isa is "x86-64-v3");
        string prefix = NewPrefix();
        var r = Install(rel, prefix, Avx2Host);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"installed edgellm-{v}-{baseline.Name}.tar.gz into {prefix}", r.Out);
        Assert.Contains($"edgellm {baseline.Name} --version", r.Out);   // the installed binary ran
        Assert.Equal($"edgellm {baseline.Name} x\n", Sh(Path.Combine(prefix, "bin", "edgellm"), null, null, "x").Out);
        Assert.True(File.Exists(Path.Combine(prefix, "bin", "edgellm-convert")));
        Assert.True(File.Exists(Path.Combine(prefix, "share", "doc", "edgellm", "LICENSE")));
        Assert.True(File.Exists(Path.Combine(prefix, "share", "edgellm", "edgellm.env")));
        string unit = File.ReadAllText(Path.Combine(prefix, "share", "edgellm", "edgellm.service"));
        Assert.Contains($"\nExecStart={prefix}/bin/edgellm serve -m ${{EDGELLM_MODEL}} ", unit);

        // A CPU with AVX-512 gets the AVX-512 build when the release has one.
        if (rows.FirstOrDefault(x => x.Isa == "x86-64-v4") is { } v4)
        {
            var env = new Dictionary<string, string>(Avx2Host) { ["EDGELLM_INSTALL_CPUFLAGS"] = Avx2Host["EDGELLM_INSTALL_CPUFLAGS"] + " avx512f avx512bw avx512cd avx512dq avx512vl" };
            var d = Install(rel, prefix, env, "--dry-run");
            Assert.Equal($"would install edgellm-{v}-{v4.Name}.tar.gz into {prefix}\n", d.Out);
        }
    }

    [Fact]
    public void InstallRefusesOldGlibcMissingAvx2AndOtherArchitectures()
    {
        string rel = FakeRelease();
        string prefix = NewPrefix();
        var rows = Matrix();
        string floor = rows.Where(r => r.Rid == "linux-x64").Select(r => r.Floor).First();
        if (System.Runtime.InteropServices.RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.X64)
        {
            var glibc = Install(rel, prefix, new(Avx2Host) { ["EDGELLM_INSTALL_GLIBC"] = "2.17" });
            Assert.Equal(1, glibc.Code);
            Assert.Contains("no archive in this release fits this machine (x86_64, glibc 2.17)", glibc.Err);
            Assert.Contains($"needs glibc {floor} or newer, this system has 2.17", glibc.Err);
            var noAvx2 = Install(rel, prefix, new(Avx2Host) { ["EDGELLM_INSTALL_CPUFLAGS"] = "fpu sse4_2 avx" });
            Assert.Equal(1, noAvx2.Code);
            Assert.Contains("needs AVX2 and FMA (Haswell, Zen 1 or newer), which this CPU lacks", noAvx2.Err);
            Assert.Contains("built for aarch64, this machine is x86_64", noAvx2.Err);
            Assert.False(Directory.Exists(prefix));
        }
        // An arm64 board (Jetson) gets the arm64 archive.
        if (rows.FirstOrDefault(r => r.Rid == "linux-arm64") is { } arm)
        {
            string armPrefix = NewPrefix();
            var a = Install(rel, armPrefix, null, "--arch", "aarch64");
            Assert.True(a.Code == 0, a.Err);
            Assert.Equal($"edgellm {arm.Name} \n", Sh(Path.Combine(armPrefix, "bin", "edgellm"), null, null).Out);
        }
    }

    [Fact]
    public void InstallRefusesATamperedArchiveAndInstallsNothing()
    {
        string rel = FakeRelease();
        string file = File.ReadAllLines(Path.Combine(rel, "MANIFEST"))[0].Split(' ')[0];
        using (var f = File.OpenWrite(Path.Combine(rel, file))) { f.Seek(100, SeekOrigin.Begin); f.WriteByte(0x55); f.WriteByte(0xAA); }
        string prefix = NewPrefix();
        string name = File.ReadAllLines(Path.Combine(rel, "MANIFEST"))[0].Split(' ')[1];
        string arch = File.ReadAllLines(Path.Combine(rel, "MANIFEST"))[0].Split(' ')[3];
        var r = Install(rel, prefix, null, "--arch", arch, "--name", name);
        Assert.Equal(1, r.Code);
        Assert.Contains($"install.sh: {file}: checksum mismatch (SHA256SUMS says ", r.Err);
        Assert.EndsWith("); nothing installed\n", r.Err);
        Assert.False(Directory.Exists(prefix));
    }

    [Fact]
    public async Task InstallDownloadsFromAUrl()
    {
        string rel = FakeRelease();
        // A local HTTP server over the release folder (no test reaches the internet).
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        using var http = new HttpListener();
        http.Prefixes.Add($"http://127.0.0.1:{port}/rel/");
        http.Start();
        var requests = new List<string>();
        using var cts = new CancellationTokenSource();
        var serve = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested)
            {
                HttpListenerContext c;
                try { c = await http.GetContextAsync(); } catch (Exception) { return; }
                string name = Path.GetFileName(c.Request.Url!.AbsolutePath);
                lock (requests) requests.Add(name);
                string path = Path.Combine(rel, name);
                if (File.Exists(path)) { c.Response.StatusCode = 200; await c.Response.OutputStream.WriteAsync(await File.ReadAllBytesAsync(path)); }
                else c.Response.StatusCode = 404;
                c.Response.Close();
            }
        });
        string line = File.ReadAllLines(Path.Combine(rel, "MANIFEST"))[0];
        string[] f = line.Split(' ');
        string prefix = NewPrefix();
        var r = await Task.Run(() => Sh("/bin/sh", null, null, Path.Combine(TestPaths.RepoRoot, "packaging", "install.sh"),
            "--from", $"http://127.0.0.1:{port}/rel", "--prefix", prefix, "--arch", f[3], "--name", f[1]));
        cts.Cancel();
        http.Stop();
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"installed {f[0]} into {prefix}", r.Out);
        lock (requests) Assert.Equal(["SHA256SUMS", "MANIFEST", f[0]], requests);
        var missing = Sh("/bin/sh", null, null, Path.Combine(TestPaths.RepoRoot, "packaging", "install.sh"), "--from", $"http://127.0.0.1:{port}/nothing", "--prefix", NewPrefix());
        Assert.Equal(1, missing.Code);
        Assert.Contains($"could not download http://127.0.0.1:{port}/nothing/SHA256SUMS", missing.Err);
    }
}
