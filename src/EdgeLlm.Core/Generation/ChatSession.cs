using System.Text;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>
/// A multi-turn conversation over one model. Each turn renders the whole conversation with the chat
/// template, and the generator prefills only what follows the longest prefix already in the KV cache,
/// so the earlier turns are not recomputed. When a turn would not fit, the oldest user/assistant turns
/// are dropped (the system prompt is kept) and the shortened conversation is prefilled again; when an answer
/// fills the context, the context is shifted (<see cref="ContextShift"/>) and the answer goes on.
/// </summary>
public sealed class ChatSession
{
    private readonly Tokenizer _tokenizer;
    private readonly Generator _generator;
    private readonly List<ChatMessage> _messages = new();
    private readonly int[] _stopTokens;
    private readonly int _contextSize;

    public ChatTemplateKind Template { get; }
    public string? SystemPrompt { get; }
    public IReadOnlyList<ChatMessage> Messages => _messages;
    public Generator Generator => _generator;

    /// <summary>Tokens the last turn's prompt pass ran (the new suffix only, when the cache was reused).</summary>
    public int LastPrefillTokens => _generator.LastPrefillTokens;

    /// <summary>Tokens kept free for the answer when deciding whether old turns must be dropped.</summary>
    public int ReserveTokens { get; init; } = 64;

    /// <summary>
    /// Shift the context when an answer fills it (keeping the BOS and the system prompt, dropping the older half of
    /// the rest) instead of stopping the answer. Before a turn, old turns are still dropped to make room.
    /// </summary>
    public bool ContextShift { get; init; } = true;

    /// <summary>Told when old turns are dropped to make room (how many messages went).</summary>
    public Action<int>? OnTruncated { get; set; }

    public ChatSession(LlamaModel model, Tokenizer tokenizer, ChatTemplateKind template, string? systemPrompt = null)
    {
        _tokenizer = tokenizer;
        _generator = new Generator(model, tokenizer);
        _contextSize = model.ContextSize;
        Template = template;
        SystemPrompt = string.IsNullOrEmpty(systemPrompt) ? null : systemPrompt;
        _stopTokens = StopTokenIds(tokenizer.Vocab, template);
        Reset();
    }

    /// <summary>The ids of the template's end-of-turn tokens that the vocabulary has.</summary>
    public static int[] StopTokenIds(Vocabulary vocab, ChatTemplateKind template)
    {
        var ids = new List<int>();
        foreach (string t in ChatTemplates.EndOfTurnTokens(template))
        {
            int id = vocab.Find(t);
            if (id != Vocabulary.None) ids.Add(id);
        }
        if (vocab.Eos != Vocabulary.None && !ids.Contains(vocab.Eos)) ids.Add(vocab.Eos);
        return ids.ToArray();
    }

    /// <summary>Forgets the conversation (keeps the system prompt); the cache is reused where it still matches.</summary>
    public void Reset()
    {
        _messages.Clear();
        if (SystemPrompt is not null) _messages.Add(new ChatMessage("system", SystemPrompt));
    }

    /// <summary>Tokens after the BOS that a context shift keeps: the rendered system prompt's common prefix with the prompt.</summary>
    private int ShiftKeep(int[] prompt)
    {
        int bos = prompt.Length > 0 && prompt[0] == _tokenizer.Vocab.Bos ? 1 : 0;
        if (SystemPrompt is null) return 0;
        int[] system = Encode([new ChatMessage("system", SystemPrompt)], generationPrompt: false);
        int same = 0;
        while (same < system.Length && same < prompt.Length && system[same] == prompt[same]) same++;
        return Math.Max(0, same - bos);
    }

    /// <summary>The token ids of the conversation so far plus the opening of the assistant's turn.</summary>
    public int[] RenderPrompt() => Encode(_messages);

    private int[] Encode(IReadOnlyList<ChatMessage> messages, bool generationPrompt = true)
        => _tokenizer.Encode(ChatTemplates.Render(Template, messages, addGenerationPrompt: generationPrompt), addBos: _tokenizer.Vocab.AddBos, parseSpecial: true);

    /// <summary>
    /// Adds the user's message, streams the answer through <paramref name="onText"/>, and records it as the
    /// assistant's message (also when cancelled: what was said stays said).
    /// </summary>
    public GenerationStats Send(string user, GenerateOptions options, Action<string> onText, CancellationToken cancel = default)
    {
        _messages.Add(new ChatMessage("user", user));
        int[] prompt = Encode(_messages);
        int dropped = 0;
        int first = SystemPrompt is null ? 0 : 1;
        while (prompt.Length + ReserveTokens > _contextSize && _messages.Count - first > 1)
        {
            // Drop the oldest turn: a user message and the assistant answer after it.
            _messages.RemoveAt(first);
            dropped++;
            if (_messages.Count - first > 1 && _messages[first].Role == "assistant") { _messages.RemoveAt(first); dropped++; }
            prompt = Encode(_messages);
        }
        if (dropped > 0) OnTruncated?.Invoke(dropped);
        if (prompt.Length >= _contextSize)
        {
            _messages.RemoveAt(_messages.Count - 1);
            throw new EdgeLlmException($"the message is {prompt.Length} tokens with the chat template, which does not fit in the context of {_contextSize} tokens");
        }

        var answer = new StringBuilder();
        var o = options with { StopTokens = _stopTokens, ReuseCache = true, ContextShift = ContextShift, ShiftKeep = ShiftKeep(prompt) };
        var stats = _generator.Generate(prompt, o, text => { answer.Append(text); onText(text); return true; }, cancel);
        _messages.Add(new ChatMessage("assistant", answer.ToString()));
        return stats;
    }
}
