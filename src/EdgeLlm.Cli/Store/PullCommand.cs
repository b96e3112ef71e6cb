using System.Diagnostics;
using System.Globalization;

namespace EdgeLlm.Cli.Store;

/// <summary>
/// `edgellm pull hf:ORG/REPO[:FILE|:QUANT]`: downloads a GGUF from the Hugging Face hub into the model store,
/// resuming an interrupted download, verifying the sha256 the hub published and the GGUF header before the file is
/// renamed into place.
/// </summary>
public sealed class PullCommand : Command
{
    private static readonly OptionSpec NameOpt = new(["--name"], true, "NAME", "store the model under this name (default: the file name without .gguf)");

    public override string Name => "pull";
    public override string Summary => "download a GGUF model from Hugging Face into the model store";
    public override string Usage => "pull hf:ORG/REPO[:FILE|:QUANT] [--name NAME]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [NameOpt, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        if (args.Positionals.Count != 1) throw new UsageException("give one model reference, hf:ORG/REPO[:FILE|:QUANT]");
        var spec = HubSpec.Parse(args.Positionals[0]);
        string? name = args.GetString("--name");
        if (name is not null && !ModelStore.IsValidName(name)) throw new UsageException($"--name '{name}' is not a valid model name (letters, digits, '.', '_', '-')");
        var store = ModelStore.Default();
        bool tty = !Console.IsErrorRedirected && ctx.Err is not StringWriter; // a terminal, not a test's capture
        var bar = new ProgressBar(ctx.Err, tty);
        using var hub = HubClient.FromEnvironment(bar.Report, notice => { bar.Clear(); ctx.Err.WriteLine($"edgellm pull: {notice}"); });
        var result = Pull(hub, store, spec, name, ctx.Err, CancellationToken.None).GetAwaiter().GetResult();
        bar.Clear();
        var m = result.Manifest;
        ctx.Out.WriteLine(result.AlreadyPresent
            ? $"{m.Name}: already in the store ({Size(m.Size)}, sha256 {m.Sha256})"
            : $"{m.Name}: pulled {m.Source} ({Size(m.Size)}, sha256 {m.Sha256} verified) into {store.Root}");
        return 0;
    }

    public sealed record PullResult(ModelManifest Manifest, bool AlreadyPresent);

    /// <summary>The whole pull: pick the file, ask for its checksum, download, verify, check it is a GGUF, commit.</summary>
    public static async Task<PullResult> Pull(HubClient hub, ModelStore store, HubSpec spec, string? name, TextWriter? log, CancellationToken cancel)
    {
        string path = spec.File ?? spec.Pick(await hub.ListFilesAsync(spec.Repo, cancel).ConfigureAwait(false));
        var remote = await hub.ResolveAsync(spec.Repo, path, cancel).ConfigureAwait(false);
        name ??= ModelStore.NameFromFile(path);
        string source = $"hf:{spec.Repo}:{path}";
        if (store.Find(name) is { } existing && existing.Name == name && existing.Sha256 == remote.Sha256 && existing.Source == source)
            return new PullResult(existing, true);

        log?.WriteLine($"edgellm pull: {source} ({Size(remote.Size)}) -> {store.ModelPath(name)}");
        Directory.CreateDirectory(store.Root);
        string partial = store.PartialPath(name);
        string sha = await hub.DownloadAsync(remote, partial, cancel).ConfigureAwait(false);
        try { ModelStore.CheckGguf(partial); }
        catch (Exception e) when (e is Gguf.GgufFormatException or EdgeLlmException or IOException)
        {
            File.Delete(partial);
            throw new EdgeLlmException($"{source}: the checksum matches but the file is not a usable GGUF ({EdgeLlm.IO.ErrorText.OneLine(e)}); deleted");
        }
        string repoName = spec.Repo[(spec.Repo.IndexOf('/') + 1)..];
        var aliases = new List<string> { source, spec.Repo, repoName };
        if (spec.Quant is { } q) { aliases.Add($"{spec.Repo}:{q}"); aliases.Add($"{repoName}:{q}"); }
        aliases.RemoveAll(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase));
        return new PullResult(store.Commit(partial, name, aliases.ToArray(), source, sha, remote.Size), false);
    }

    internal static string Size(long bytes)
    {
        var inv = CultureInfo.InvariantCulture;
        return bytes >= 1L << 30 ? (bytes / (double)(1L << 30)).ToString("F2", inv) + " GiB"
            : bytes >= 1L << 20 ? (bytes / (double)(1L << 20)).ToString("F1", inv) + " MiB"
            : bytes >= 1L << 10 ? (bytes / 1024.0).ToString("F1", inv) + " KiB"
            : bytes.ToString(inv) + " B";
    }

    /// <summary>A one-line bar on stderr, redrawn at most ten times a second; drawn only on a terminal.</summary>
    private sealed class ProgressBar(TextWriter err, bool enabled)
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastDraw = -1000;
        private long _startBytes = -1;
        private bool _drawn;

        public void Report(long have, long total)
        {
            if (!enabled) return;
            if (_startBytes < 0) _startBytes = have;
            long now = _clock.ElapsedMilliseconds;
            if (have < total && now - _lastDraw < 100) return;
            _lastDraw = now;
            const int Width = 30;
            double frac = total > 0 ? (double)have / total : 1;
            int fill = (int)(frac * Width);
            double secs = Math.Max(_clock.Elapsed.TotalSeconds, 1e-3);
            double rate = (have - _startBytes) / secs;
            string eta = rate > 0 && have < total ? $" eta {TimeSpan.FromSeconds((total - have) / rate):hh\\:mm\\:ss}" : "";
            err.Write($"\r[{new string('#', fill)}{new string('.', Width - fill)}] {frac * 100,5:F1}% {Size(have)} / {Size(total)} {Size((long)rate)}/s{eta}\x1b[K");
            err.Flush();
            _drawn = true;
        }

        public void Clear()
        {
            if (!_drawn) return;
            err.Write("\r\x1b[K");
            err.Flush();
            _drawn = false;
        }
    }
}
