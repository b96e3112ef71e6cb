using System.Diagnostics;
using System.Net;
using System.Text;
using EdgeLlm.Cli.Server;
using EdgeLlm.Backends;
using EdgeLlm.Compute;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Fuzz;

/// <summary>What a fuzz pass saw: inputs the parser accepted, inputs it refused with a one-line error, and failures.</summary>
public sealed record FuzzReport(string Target, int Cases, int Accepted, int Refused, IReadOnlyList<string> Failures)
{
    public override string ToString() =>
        $"{Target}: {Cases} cases, {Accepted} accepted, {Refused} refused with one line, {Failures.Count} failures";
}

/// <summary>
/// The fuzz targets: each mutates a seed input and feeds it to the same code the CLI runs. A case passes when the
/// input is accepted or refused with an exception the tools print as one line (their user-facing set:
/// EdgeLlmException and its kinds, IOException, UnauthorizedAccessException), within the time limit. Anything else
/// (IndexOutOfRange, NullReference, Overflow, OutOfMemory, a hang) is a failure, saved under the failure folder.
/// </summary>
public static class Targets
{
    public static readonly string[] Names = ["gguf", "pth", "safetensors", "tokenizer", "http"];

    public static FuzzReport Run(string target, string repoRoot, int cases, int seed, string failureDir, TimeSpan perCase)
    {
        return target switch
        {
            "gguf" => FileTarget(target, File.ReadAllBytes(Path.Combine(repoRoot, "models", "stories260K.gguf")), ".gguf", cases, seed, failureDir, perCase, LoadAndRunGguf),
            "pth" => DirTarget(target, Path.Combine(repoRoot, "tests", "data", "meta-tiny"), "consolidated.00.pth", cases, seed, failureDir, perCase),
            "safetensors" => DirTarget(target, Path.Combine(repoRoot, "tests", "data", "stories260K-hf"), "model.safetensors", cases, seed, failureDir, perCase),
            "tokenizer" => TokenizerTarget(cases, seed, failureDir, perCase),
            "http" => HttpTarget(repoRoot, cases, seed, failureDir, perCase).GetAwaiter().GetResult(),
            _ => throw new ArgumentException($"unknown fuzz target '{target}' (expected {string.Join(", ", Names)})"),
        };
    }

    /// <summary>Whether the CLI reports this exception as one line (its user-facing set).</summary>
    public static bool IsOneLine(Exception e) => e is EdgeLlmException or IOException or UnauthorizedAccessException;

    private enum Outcome { Accepted, Refused }

    /// <summary>Runs one case with a time limit; null on success, else what went wrong.</summary>
    private static string? Guard(Func<Outcome> body, TimeSpan limit, out Outcome outcome)
    {
        Outcome o = Outcome.Refused;
        Exception? error = null;
        var t = new Thread(() =>
        {
            try { o = body(); }
            catch (Exception e) when (IsOneLine(e)) { o = Outcome.Refused; }
            catch (Exception e) { error = e; }
        }, 64 << 20) { IsBackground = true };
        t.Start();
        outcome = Outcome.Refused;
        if (!t.Join(limit)) return $"no answer within {limit.TotalSeconds:F0} s (hang or runaway work)";
        outcome = o;
        return error is null ? null : $"{error.GetType().Name}: {error.Message.ReplaceLineEndings(" ")} at {FirstFrame(error)}";
    }

    private static string FirstFrame(Exception e)
    {
        string s = e.StackTrace ?? "";
        int nl = s.IndexOf('\n');
        return (nl < 0 ? s : s[..nl]).Trim();
    }

    private static FuzzReport FileTarget(string name, byte[] seedBytes, string ext, int cases, int seed, string failureDir, TimeSpan limit,
        Func<string, Outcome> body)
    {
        var m = new Mutator(seed);
        var failures = new List<string>();
        int accepted = 0, refused = 0;
        string dir = Directory.CreateTempSubdirectory("edgellm-fuzz-").FullName;
        try
        {
            for (int c = 0; c < cases; c++)
            {
                byte[] input = m.Mutate(seedBytes);
                string path = Path.Combine(dir, $"case{ext}");
                File.WriteAllBytes(path, input);
                string? fail = Guard(() => body(path), limit, out var o);
                if (fail is null) { if (o == Outcome.Accepted) accepted++; else refused++; continue; }
                failures.Add(Save(failureDir, name, seed, c, ext, input, fail));
            }
        }
        finally { TryDelete(dir); }
        return new FuzzReport(name, cases, accepted, refused, failures);
    }

    /// <summary>A checkpoint directory whose one file is mutated; the source is opened and every tensor read.</summary>
    private static FuzzReport DirTarget(string name, string seedDir, string file, int cases, int seed, string failureDir, TimeSpan limit)
    {
        var m = new Mutator(seed);
        var failures = new List<string>();
        int accepted = 0, refused = 0;
        string dir = Directory.CreateTempSubdirectory("edgellm-fuzz-").FullName;
        try
        {
            foreach (string f in Directory.GetFiles(seedDir)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            byte[] seedBytes = File.ReadAllBytes(Path.Combine(seedDir, file));
            for (int c = 0; c < cases; c++)
            {
                byte[] input = m.Mutate(seedBytes);
                File.WriteAllBytes(Path.Combine(dir, file), input);
                string? fail = Guard(() => ReadCheckpoint(dir, name == "pth"), limit, out var o);
                if (fail is null) { if (o == Outcome.Accepted) accepted++; else refused++; continue; }
                failures.Add(Save(failureDir, name, seed, c, Path.GetExtension(file), input, fail));
            }
        }
        finally { TryDelete(dir); }
        return new FuzzReport(name, cases, accepted, refused, failures);
    }

    /// <summary>Opens the checkpoint (Meta's without a tokenizer: the fixture has none) and reads every tensor.</summary>
    private static Outcome ReadCheckpoint(string dir, bool meta)
    {
        using CheckpointSource source = meta ? MetaPthSource.Open(dir) : CheckpointSources.Open(dir);
        _ = source.Params;
        foreach (var t in source.Tensors)
        {
            if (t.Rows * t.RowLength > 1 << 24) throw new EdgeLlmException($"{t.Name}: larger than this fuzz pass reads");
            var buf = new float[t.RowLength];
            for (long r = 0; r < t.Rows; r++) t.ReadRows(r, 1, buf);
        }
        return Outcome.Accepted;
    }

    private static Outcome LoadAndRunGguf(string path)
    {
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1, ContextSize = 8 });
        var tok = Tokenizer.FromGguf(model.File);
        int[] ids = tok.Encode("Once upon a <s> time", addBos: true, parseSpecial: true);
        var logits = new float[model.VocabSize];
        foreach (int id in ids.AsSpan(0, Math.Min(ids.Length, 4)))
            if ((uint)id < (uint)model.VocabSize) { model.Forward([id], model.Cache.Filled, logits); }
        _ = tok.Decode(ids);
        return Outcome.Accepted;
    }

    /// <summary>A small byte-level BPE tokenizer.json with added and special tokens, mutated as text and as bytes.</summary>
    private static FuzzReport TokenizerTarget(int cases, int seed, string failureDir, TimeSpan limit)
    {
        var sb = new StringBuilder("{\"version\":\"1.0\",\"added_tokens\":[{\"id\":300,\"content\":\"<|endoftext|>\",\"special\":true},{\"id\":301,\"content\":\"<|im_start|>\",\"special\":true}],");
        sb.Append("\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},\"model\":{\"type\":\"BPE\",\"vocab\":{");
        var map = new List<string>();
        for (int i = 0; i < 256; i++) map.Add(ByteLevelChar(i));
        string[] merged = ["he", "ll", "hell", "hello", "Ġw", "Ġwo", "or", "ld", "Ġworld", "in", "ing", "th", "the", "Ġthe"];
        for (int i = 0; i < map.Count; i++) sb.Append(JsonString(map[i])).Append(':').Append(i).Append(',');
        for (int i = 0; i < merged.Length; i++) sb.Append(JsonString(merged[i])).Append(':').Append(256 + i).Append(i + 1 < merged.Length ? "," : "");
        sb.Append("},\"merges\":[\"h e\",\"l l\",\"he ll\",\"hell o\",\"Ġ w\",\"Ġw o\",\"o r\",\"l d\",\"Ġwo rld\",\"i n\",\"in g\",\"t h\",\"th e\",\"Ġ the\"]}}");
        string seedJson = sb.ToString();
        var m = new Mutator(seed);
        var failures = new List<string>();
        int accepted = 0, refused = 0;
        string dir = Directory.CreateTempSubdirectory("edgellm-fuzz-").FullName;
        try
        {
            string path = Path.Combine(dir, "tokenizer.json");
            for (int c = 0; c < cases; c++)
            {
                byte[] input = c % 2 == 0 ? Encoding.UTF8.GetBytes(m.MutateJson(seedJson)) : m.Mutate(Encoding.UTF8.GetBytes(seedJson));
                File.WriteAllBytes(path, input);
                string? fail = Guard(() => { _ = TokenizerLoader.Load(path); return Outcome.Accepted; }, limit, out var o);
                if (fail is null) { if (o == Outcome.Accepted) accepted++; else refused++; continue; }
                failures.Add(Save(failureDir, "tokenizer", seed, c, ".json", input, fail));
            }
        }
        finally { TryDelete(dir); }
        return new FuzzReport("tokenizer", cases, accepted, refused, failures);
    }

    private static string ByteLevelChar(int b)
    {
        // GPT-2's printable mapping of the 256 bytes
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return ((char)b).ToString();
        int n = 0;
        for (int i = 0; i < b; i++)
            if (!((i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) n++;
        return ((char)(256 + n)).ToString();
    }

    private static string JsonString(string s) => System.Text.Json.JsonSerializer.Serialize(s, FuzzJson.Default.String);

    /// <summary>
    /// Request bodies for the OpenAI-style endpoints, mutated, against a real server on a loopback port. A case fails
    /// on a 500, on an error message that shows .NET internals (type names, resource keys), or when /health stops
    /// answering within two seconds.
    /// </summary>
    private static async Task<FuzzReport> HttpTarget(string repoRoot, int cases, int seed, string failureDir, TimeSpan limit)
    {
        using var model = LlamaModel.Load(Path.Combine(repoRoot, "models", "stories260K.gguf"), new BackendOptions { Threads = 1, ContextSize = 128 });
        var engine = new InferenceEngine(model, "stories260K", ChatTemplateKind.ChatMl, queueLimit: 4);
        await using var server = await EdgeLlmServer.StartAsync(engine, new ServerOptions { Port = 0, MaxBodyBytes = 64 * 1024 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = limit };
        (string Path, string Body)[] seeds =
        [
            ("/v1/chat/completions", "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"Once upon a time\"}],\"max_tokens\":4,\"temperature\":0}"),
            ("/v1/chat/completions", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,\"max_tokens\":3,\"stop\":[\"a\",\"b\"],\"seed\":3}"),
            ("/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"Once upon\",\"max_tokens\":4,\"top_p\":0.9,\"top_k\":5}"),
        ];
        var m = new Mutator(seed);
        var failures = new List<string>();
        int accepted = 0, refused = 0;
        for (int c = 0; c < cases; c++)
        {
            var (path, body) = seeds[c % seeds.Length];
            string input = m.MutateJson(body);
            string? fail;
            try
            {
                using var content = new StringContent(input, Encoding.UTF8, "application/json");
                using var resp = await http.PostAsync(path, content);
                string text = await resp.Content.ReadAsStringAsync();
                if (resp.StatusCode == HttpStatusCode.OK) { accepted++; fail = null; }
                else if ((int)resp.StatusCode >= 500 && resp.StatusCode != HttpStatusCode.ServiceUnavailable) fail = $"HTTP {(int)resp.StatusCode}: {text}";
                else if (System.Text.RegularExpressions.Regex.IsMatch(text, @"System\.[A-Z]|\b[A-Z][a-z]+[A-Z][A-Za-z]+_[A-Za-z_]+\b|BytePositionInLine"))
                    fail = $"HTTP {(int)resp.StatusCode} shows .NET internals: {text}";
                else { refused++; fail = null; }
            }
            catch (Exception e) when (e is TaskCanceledException or HttpRequestException)
            {
                fail = $"no answer: {e.GetType().Name}: {e.Message}";
            }
            if (fail is null && c % 25 == 24)
            {
                var sw = Stopwatch.StartNew();
                using var health = await http.GetAsync("/health");
                if (health.StatusCode != HttpStatusCode.OK || sw.Elapsed > TimeSpan.FromSeconds(2))
                    fail = $"/health answered {(int)health.StatusCode} after {sw.Elapsed.TotalSeconds:F1} s";
            }
            if (fail is not null) failures.Add(Save(failureDir, "http", seed, c, ".json", Encoding.UTF8.GetBytes(path + "\n" + input), fail));
        }
        return new FuzzReport("http", cases, accepted, refused, failures);
    }

    private static string Save(string failureDir, string target, int seed, int c, string ext, byte[] input, string what)
    {
        Directory.CreateDirectory(failureDir);
        string file = Path.Combine(failureDir, $"{target}-seed{seed}-case{c}{ext}");
        File.WriteAllBytes(file, input);
        return $"{file}: {what}";
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class FuzzJson : System.Text.Json.Serialization.JsonSerializerContext;

/// <summary>The string serializer context, for tests that write JSON bodies (AOT-style, no reflection).</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
public sealed partial class FuzzJsonForTests : System.Text.Json.Serialization.JsonSerializerContext;
