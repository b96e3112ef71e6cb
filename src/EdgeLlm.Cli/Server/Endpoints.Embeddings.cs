using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace EdgeLlm.Cli.Server;

/// <summary>POST /v1/embeddings (with <c>--embeddings</c>): one pooled, normalized vector per input string.</summary>
internal sealed partial class Endpoints
{
    /// <summary>Inputs one request may carry (OpenAI allows 2048).</summary>
    internal const int MaxEmbeddingInputs = 2048;

    /// <summary>The input strings: a string, or an array of strings. Token-id inputs and empty strings are refused.</summary>
    internal static List<string> EmbeddingInputs(JsonElement? input)
    {
        if (input is not { } v || v.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
            throw new ApiError(400, "input is required (a string or an array of strings)", "input");
        var list = new List<string>();
        if (v.ValueKind == JsonValueKind.String) list.Add(v.GetString()!);
        else if (v.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var e in v.EnumerateArray())
            {
                if (e.ValueKind is JsonValueKind.Number or JsonValueKind.Array)
                    throw new ApiError(400, "input as token ids is not supported: send the text", "input", "unsupported_parameter");
                if (e.ValueKind != JsonValueKind.String)
                    throw new ApiError(400, $"'input[{i}]' must be a string", $"input[{i}]", "invalid_type");
                list.Add(e.GetString()!);
                i++;
            }
            if (list.Count == 0) throw new ApiError(400, "input is an empty array", "input");
            if (list.Count > MaxEmbeddingInputs)
                throw new ApiError(400, $"input has {list.Count} strings, at most {MaxEmbeddingInputs} are accepted", "input");
        }
        else throw new ApiError(400, "input must be a string or an array of strings", "input", "invalid_type");
        for (int i = 0; i < list.Count; i++)
            if (list[i].Length == 0)
                throw new ApiError(400, list.Count == 1 ? "input is an empty string" : $"'input[{i}]' is an empty string", list.Count == 1 ? "input" : $"input[{i}]");
        return list;
    }

    private async Task Embeddings(HttpContext http)
    {
        if (engine.Embedder is not { } embedder)
            throw new ApiError(501, "this server does not compute embeddings: start it with --embeddings", code: "embeddings_disabled", type: "invalid_request_error");
        var req = await Read(http, OpenAiJsonContext.Default.EmbeddingRequest);
        var inputs = EmbeddingInputs(req.Input);
        string format = req.EncodingFormat ?? "float";
        if (format is not ("float" or "base64"))
            throw new ApiError(400, $"encoding_format must be float or base64, got '{format}'", "encoding_format");
        if (req.Dimensions is { } d && d != embedder.Dimensions)
            throw Unsupported("dimensions", $"this model's embeddings have {embedder.Dimensions} dimensions and are not shortened");
        var tokens = new List<int[]>(inputs.Count);
        int total = 0;
        for (int i = 0; i < inputs.Count; i++)
        {
            int[] t = engine.Tokenizer.Encode(inputs[i], addBos: engine.Tokenizer.Vocab.AddBos);
            string param = inputs.Count == 1 ? "input" : $"input[{i}]";
            if (t.Length == 0) throw new ApiError(400, $"'{param}' has no tokens", param);
            if (t.Length > engine.Model.ContextSize)
                throw new ApiError(400, $"'{param}' is {t.Length} tokens, which does not fit in the context of {engine.Model.ContextSize} tokens",
                    param, "context_length_exceeded");
            tokens.Add(t);
            total += t.Length;
        }
        if (!engine.TryAdmit())
            throw new ApiError(503, $"the server is busy ({engine.QueueLimit} requests already waiting); retry later", code: "server_busy", type: "server_error");
        float[][] vectors;
        try
        {
            vectors = await engine.EmbedAsync(tokens, http.RequestAborted);
        }
        finally
        {
            engine.Leave();
        }
        metrics.CountEmbeddings(inputs.Count, total);
        string model = string.IsNullOrEmpty(req.Model) ? engine.ModelId : req.Model;
        var usage = new EmbeddingUsage { PromptTokens = total, TotalTokens = total };
        if (format == "float")
        {
            var list = new EmbeddingList { Model = model, Usage = usage };
            for (int i = 0; i < vectors.Length; i++) list.Data.Add(new EmbeddingItem { Index = i, Embedding = vectors[i] });
            await Json(http, 200, list, OpenAiJsonContext.Default.EmbeddingList);
        }
        else
        {
            var list = new EmbeddingListBase64 { Model = model, Usage = usage };
            for (int i = 0; i < vectors.Length; i++)
            {
                byte[] bytes = new byte[vectors[i].Length * sizeof(float)];
                for (int k = 0; k < vectors[i].Length; k++)
                    System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(k * sizeof(float)), vectors[i][k]);
                list.Data.Add(new EmbeddingItemBase64 { Index = i, Embedding = Convert.ToBase64String(bytes) });
            }
            await Json(http, 200, list, OpenAiJsonContext.Default.EmbeddingListBase64);
        }
    }
}
