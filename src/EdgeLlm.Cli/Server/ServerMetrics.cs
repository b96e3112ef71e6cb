using System.Globalization;
using System.Text;

namespace EdgeLlm.Cli.Server;

/// <summary>
/// The counters behind <c>/metrics</c>, written in the Prometheus text exposition format (version 0.0.4).
/// Requests are counted per endpoint (the known routes, everything else as "other", so a client cannot grow
/// the label set) and status code.
/// </summary>
public sealed class ServerMetrics
{
    private static readonly string[] KnownEndpoints =
        ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics"];

    private readonly Lock _lock = new();
    private readonly Dictionary<(string Endpoint, int Status), long> _requests = new();
    private long _promptTokens, _cachedTokens, _completionTokens, _embeddingInputs, _embeddingTokens;
    private double _lastPrefill, _lastDecode;

    /// <summary>The endpoint label of a request path.</summary>
    public static string EndpointOf(string path)
    {
        foreach (string e in KnownEndpoints)
            if (string.Equals(path, e, StringComparison.Ordinal)) return e;
        return "other";
    }

    public void CountRequest(string path, int status)
    {
        var key = (EndpointOf(path), status);
        lock (_lock) _requests[key] = _requests.GetValueOrDefault(key) + 1;
    }

    public void CountGeneration(EngineResult r)
    {
        lock (_lock)
        {
            _promptTokens += r.Stats.PromptTokens;
            _cachedTokens += r.CachedTokens;
            _completionTokens += r.Stats.GeneratedTokens;
            if (r.PrefilledTokens > 0) _lastPrefill = r.PrefillTokensPerSecond;
            if (r.Stats.GeneratedTokens > 1) _lastDecode = r.Stats.GenerationTokensPerSecond;
        }
    }

    public void CountEmbeddings(int inputs, int tokens)
    {
        lock (_lock)
        {
            _embeddingInputs += inputs;
            _embeddingTokens += tokens;
        }
    }

    /// <summary>The exposition text; queue depth and slot use are read from the engine now.</summary>
    public string Render(InferenceEngine engine)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        lock (_lock)
        {
            sb.Append("# HELP edgellm_requests_total HTTP requests answered, by endpoint and status code.\n");
            sb.Append("# TYPE edgellm_requests_total counter\n");
            var keys = new List<(string Endpoint, int Status)>(_requests.Keys);
            keys.Sort((a, b) => a.Endpoint != b.Endpoint ? string.CompareOrdinal(a.Endpoint, b.Endpoint) : a.Status.CompareTo(b.Status));
            foreach (var k in keys)
                sb.Append(inv, $"edgellm_requests_total{{endpoint=\"{k.Endpoint}\",status=\"{k.Status}\"}} {_requests[k]}\n");
            Counter(sb, "edgellm_prompt_tokens_total", "Prompt tokens of finished generations (cached ones included).", _promptTokens);
            Counter(sb, "edgellm_prompt_cached_tokens_total", "Prompt tokens reused from the KV cache instead of prefilled.", _cachedTokens);
            Counter(sb, "edgellm_completion_tokens_total", "Tokens generated.", _completionTokens);
            Gauge(sb, "edgellm_last_prefill_tokens_per_second", "Prefill speed of the last generation that prefilled anything.", _lastPrefill);
            Counter(sb, "edgellm_embedding_inputs_total", "Strings embedded by /v1/embeddings.", _embeddingInputs);
            Counter(sb, "edgellm_embedding_tokens_total", "Tokens run by /v1/embeddings.", _embeddingTokens);
            Gauge(sb, "edgellm_last_decode_tokens_per_second", "Decode speed of the last generation of two or more tokens.", _lastDecode);
        }
        Gauge(sb, "edgellm_queue_depth", "Requests admitted and waiting for a free slot.", engine.QueueDepth);
        Gauge(sb, "edgellm_slot_busy", "Slots holding a request now.", engine.Busy);
        Gauge(sb, "edgellm_slots", "Generation slots (--parallel).", engine.SlotCount);
        Counter(sb, "edgellm_decode_steps_total", "Batched decode steps (one forward pass for every generating slot).", engine.DecodeSteps);
        Counter(sb, "edgellm_decode_step_tokens_total", "Tokens produced by batched decode steps, all slots.", engine.DecodeTokens);
        Gauge(sb, "edgellm_decode_batch_size", "Slots the last decode step ran together.", engine.LastStepSize);
        Gauge(sb, "edgellm_decode_tokens_per_second", "Aggregate decode speed of the last step (its slots' tokens over its time).", engine.LastStepTokensPerSecond);
        Counter(sb, "edgellm_steps_total", "Forward calls of the scheduler (decode, prompt and mixed steps).", engine.Steps);
        Counter(sb, "edgellm_step_prompt_tokens_total", "Prompt tokens run in the scheduler's steps.", engine.StepPromptTokens);
        Counter(sb, "edgellm_step_forward_seconds_total", "Seconds the scheduler spent in forward calls.", engine.ForwardSeconds);
        Counter(sb, "edgellm_step_host_seconds_total", "Seconds the scheduler spent with work outside the forward calls (admission, sampling, text).", engine.HostSeconds);
        Counter(sb, "edgellm_scheduler_idle_seconds_total", "Seconds the scheduler waited with no request to run.", engine.IdleSeconds);
        Counter(sb, "edgellm_prompt_gather_seconds_total", "Seconds prompt-only steps waited for the next requests of clients whose requests just ended.", engine.GatherSeconds);
        return sb.ToString();
    }

    private static void Counter(StringBuilder sb, string name, string help, long value)
        => sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");

    private static void Counter(StringBuilder sb, string name, string help, double value)
        => sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} counter\n{name} {value.ToString("R", CultureInfo.InvariantCulture)}\n");

    private static void Gauge(StringBuilder sb, string name, string help, double value)
        => sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value.ToString("R", CultureInfo.InvariantCulture)}\n");
}
