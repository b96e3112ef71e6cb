// EdgeLlm through Microsoft.Extensions.AI: load a GGUF, ask for a story, stream it to stdout.
//   edgellm-sample [MODEL.gguf] [PROMPT]
// Without a model argument it looks for the repository's models/stories260K.gguf above the executable and the
// current folder.
using EdgeLlm.AI;
using Microsoft.Extensions.AI;

string? model = args.Length > 0 ? args[0] : FindStories();
if (model is null || !File.Exists(model))
{
    Console.Error.WriteLine($"edgellm-sample: model file not found ({model ?? "models/stories260K.gguf"}); usage: edgellm-sample [MODEL.gguf] [PROMPT]");
    return 2;
}
string prompt = args.Length > 1 ? args[1] : "Tell me a story about a little dog.";

using IChatClient chat = new EdgeLlmChatClient(model);
var options = new ChatOptions { Temperature = 0.8f, TopK = 40, Seed = 42, MaxOutputTokens = 200 };

ChatFinishReason? finish = null;
UsageDetails? usage = null;
await foreach (ChatResponseUpdate update in chat.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, prompt)], options))
{
    Console.Write(update.Text);
    finish ??= update.FinishReason;
    foreach (var c in update.Contents)
        if (c is UsageContent u) usage = u.Details;
}
Console.WriteLine();
Console.Error.WriteLine($"[{chat.GetService<ChatClientMetadata>()?.DefaultModelId}: prompt {usage?.InputTokenCount} tokens, answer {usage?.OutputTokenCount} tokens, finish reason {finish}]");
return 0;

static string? FindStories()
{
    foreach (string start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        for (string? d = start; d is not null; d = Path.GetDirectoryName(d))
        {
            string p = Path.Combine(d, "models", "stories260K.gguf");
            if (File.Exists(p)) return p;
        }
    return null;
}
