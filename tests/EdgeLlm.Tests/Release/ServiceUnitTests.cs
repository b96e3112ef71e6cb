using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace EdgeLlm.Tests.Release;

/// <summary>
/// The systemd unit's ExecStart, expanded from edgellm.env the way systemd expands it (${VAR} one word, $VAR split on
/// whitespace, an empty $VAR no word), starts the published `edgellm serve` with the built-in model.
/// </summary>
public class ServiceUnitTests
{
    private static Dictionary<string, string> EnvFile(string path)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string raw in File.ReadAllLines(path))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            int eq = line.IndexOf('=');
            Assert.True(eq > 0, $"not NAME=VALUE: {line}");
            env[line[..eq]] = line[(eq + 1)..];
        }
        return env;
    }

    private static List<string> ExecStart(string unit, Dictionary<string, string> env)
    {
        string line = unit.Split('\n').Single(l => l.StartsWith("ExecStart=", StringComparison.Ordinal))["ExecStart=".Length..];
        var words = new List<string>();
        foreach (string w in line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var braced = Regex.Match(w, @"^\$\{(\w+)\}$");
            var bare = Regex.Match(w, @"^\$(\w+)$");
            if (braced.Success) words.Add(env.GetValueOrDefault(braced.Groups[1].Value, ""));
            else if (bare.Success) words.AddRange(env.GetValueOrDefault(bare.Groups[1].Value, "").Split(' ', StringSplitOptions.RemoveEmptyEntries));
            else
            {
                Assert.DoesNotContain("$", w);
                words.Add(w);
            }
        }
        return words;
    }

    [Fact]
    public async Task UnitAndEnvironmentFileStartServeWithTheBuiltInModel()
    {
        string packaging = Path.Combine(TestPaths.RepoRoot, "packaging");
        var env = EnvFile(Path.Combine(packaging, "edgellm.env"));
        Assert.Equal("stories260K", env["EDGELLM_MODEL"]);
        string unit = File.ReadAllText(Path.Combine(packaging, "edgellm.service"));
        Assert.Contains("\nEnvironmentFile=/etc/edgellm/edgellm.env\n", unit);
        Assert.Contains("\nWantedBy=multi-user.target\n", unit);

        int port;
        using (var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        env["EDGELLM_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var words = ExecStart(unit, env);
        Assert.Equal("/usr/local/bin/edgellm", words[0]);   // install.sh rewrites this path
        Assert.Equal(["serve", "-m", "stories260K", "--host", "127.0.0.1", "--port", env["EDGELLM_PORT"]], words.Skip(1));

        Assert.True(File.Exists(Cli.CliRunner.PublishedBinary), "tools/test.sh publishes dist/linux-x64/edgellm");
        var psi = new ProcessStartInfo(Cli.CliRunner.PublishedBinary) { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = "/" };
        psi.Environment.Clear();
        foreach (var (k, v) in env) psi.Environment[k] = v;   // EnvironmentFile= exports every variable to the service
        foreach (string a in words.Skip(1)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
            string? health = null;
            for (int i = 0; i < 120 && health is null && !p.HasExited; i++)
            {
                try { health = await http.GetStringAsync("/health"); }
                catch (HttpRequestException) { await Task.Delay(500); }
            }
            Assert.True(health is not null, "serve never answered /health");
            Assert.Equal("ok", JsonDocument.Parse(health!).RootElement.GetProperty("status").GetString());
            string models = await http.GetStringAsync("/v1/models");
            Assert.Contains("stories260K", models);
        }
        finally
        {
            if (!p.HasExited) p.Kill(true);
            p.WaitForExit(10_000);
        }
        Assert.Contains($"on http://127.0.0.1:{port}", await stderr);
    }
}
