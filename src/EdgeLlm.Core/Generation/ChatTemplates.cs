using System.Text;

namespace EdgeLlm.Generation;

/// <summary>One message of a conversation: role "system", "user" or "assistant", and its text.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>The chat formats EdgeLlm can render (the llama.cpp names in <see cref="ChatTemplates.Name"/>).</summary>
public enum ChatTemplateKind
{
    ChatMl,
    Llama2,
    Llama2Sys,
    Llama2SysBos,
    Llama2SysStrip,
    MistralV1,
    MistralV3,
    MistralV3Tekken,
    MistralV7,
    Llama3,
    Phi3,
    Zephyr,
    Gemma,
}

/// <summary>
/// Recognises a GGUF's <c>tokenizer.chat_template</c> by its marker strings, the way llama.cpp's
/// <c>llm_chat_detect_template</c> does, and renders a conversation into the prompt text that template
/// would produce. The Jinja text comes from an untrusted file and is never evaluated: only searched for
/// markers. Each renderer writes what llama.cpp's <c>llm_chat_apply_template</c> writes for that format
/// (the leading BOS is left to the tokenizer).
/// </summary>
public static class ChatTemplates
{
    private static readonly (string Name, ChatTemplateKind Kind)[] Names =
    [
        ("chatml", ChatTemplateKind.ChatMl),
        ("llama2", ChatTemplateKind.Llama2),
        ("llama2-sys", ChatTemplateKind.Llama2Sys),
        ("llama2-sys-bos", ChatTemplateKind.Llama2SysBos),
        ("llama2-sys-strip", ChatTemplateKind.Llama2SysStrip),
        ("mistral-v1", ChatTemplateKind.MistralV1),
        ("mistral-v3", ChatTemplateKind.MistralV3),
        ("mistral-v3-tekken", ChatTemplateKind.MistralV3Tekken),
        ("mistral-v7", ChatTemplateKind.MistralV7),
        ("llama3", ChatTemplateKind.Llama3),
        ("phi3", ChatTemplateKind.Phi3),
        ("zephyr", ChatTemplateKind.Zephyr),
        ("gemma", ChatTemplateKind.Gemma),
    ];

    /// <summary>The names <c>--chat-template</c> accepts, in a stable order.</summary>
    public static IEnumerable<string> KnownNames
    {
        get { foreach (var (n, _) in Names) yield return n; }
    }

    /// <summary>llama.cpp's name of a format.</summary>
    public static string Name(ChatTemplateKind kind)
    {
        foreach (var (n, k) in Names) if (k == kind) return n;
        throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a chat template");
    }

    /// <summary>A format by its name (case-insensitive), or null.</summary>
    public static ChatTemplateKind? FromName(string name)
    {
        foreach (var (n, k) in Names) if (string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) return k;
        return null;
    }

    /// <summary>
    /// The format of a Jinja chat template, found by its markers in llama.cpp's order; null when none
    /// matches. A template that is itself one of the known names is taken as that name.
    /// </summary>
    public static ChatTemplateKind? Detect(string template)
    {
        if (FromName(template.Trim()) is { } named) return named;
        bool Has(string s) => template.Contains(s, StringComparison.Ordinal);

        if (Has("<|im_start|>")) return ChatTemplateKind.ChatMl;
        if (template.StartsWith("mistral", StringComparison.Ordinal) || Has("[INST]"))
        {
            if (Has("[SYSTEM_PROMPT]")) return ChatTemplateKind.MistralV7;
            // Mistral's official v1/v3/v3-tekken templates: the v1 system message concatenation or the tools block.
            if (Has("' [INST] ' + system_message") || Has("[AVAILABLE_TOOLS]"))
            {
                if (Has(" [INST]")) return ChatTemplateKind.MistralV1;
                if (Has("\"[INST]\"")) return ChatTemplateKind.MistralV3Tekken;
                return ChatTemplateKind.MistralV3;
            }
            // Llama 2 and its variants: system message support, BOS inside the history, stripped messages.
            if (Has("content.strip()")) return ChatTemplateKind.Llama2SysStrip;
            if (Has("bos_token + '[INST]")) return ChatTemplateKind.Llama2SysBos;
            if (Has("<<SYS>>")) return ChatTemplateKind.Llama2Sys;
            return ChatTemplateKind.Llama2;
        }
        if (Has("<|assistant|>") && Has("<|end|>")) return ChatTemplateKind.Phi3;
        if (Has("<|user|>")) return ChatTemplateKind.Zephyr;
        if (Has("<start_of_turn>")) return ChatTemplateKind.Gemma;
        if (Has("<|start_header_id|>") && Has("<|end_header_id|>")) return ChatTemplateKind.Llama3;
        return null;
    }

    /// <summary>
    /// Chooses the format for a model: <paramref name="forced"/> (a name) if given, else the detected
    /// <paramref name="template"/>, else chatml, as llama.cpp's server does for a missing or unsupported
    /// template. <paramref name="warning"/> says when the fallback was taken.
    /// </summary>
    public static ChatTemplateKind Resolve(string? template, string? forced, out string? warning)
    {
        warning = null;
        if (!string.IsNullOrEmpty(forced))
            return FromName(forced) ?? throw new EdgeLlmException(
                $"unknown chat template '{forced}' (known: {string.Join(", ", KnownNames)})");
        if (string.IsNullOrEmpty(template))
        {
            warning = "the model has no tokenizer.chat_template; using chatml (--chat-template picks another)";
            return ChatTemplateKind.ChatMl;
        }
        if (Detect(template) is { } k) return k;
        warning = "the model's chat template is not one EdgeLlm recognises; falling back to chatml (--chat-template picks another)";
        return ChatTemplateKind.ChatMl;
    }

    /// <summary>Token texts that end an assistant turn in this format (besides the vocabulary's EOS).</summary>
    public static IReadOnlyList<string> EndOfTurnTokens(ChatTemplateKind kind) => kind switch
    {
        ChatTemplateKind.ChatMl => ["<|im_end|>"],
        ChatTemplateKind.Llama3 => ["<|eot_id|>"],
        ChatTemplateKind.Phi3 => ["<|end|>"],
        ChatTemplateKind.Gemma => ["<end_of_turn>"],
        ChatTemplateKind.Zephyr => ["<|endoftext|>"],
        _ => ["</s>"],
    };

    /// <summary>
    /// The prompt text for <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/>, ends
    /// with the opening of the assistant's turn (llama2/mistral formats have none: the user turn's
    /// closing marker already invites the answer).
    /// </summary>
    public static string Render(ChatTemplateKind kind, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var sb = new StringBuilder();
        switch (kind)
        {
            case ChatTemplateKind.ChatMl:
                foreach (var m in messages) sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
                if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
                break;
            case ChatTemplateKind.Llama2 or ChatTemplateKind.Llama2Sys or ChatTemplateKind.Llama2SysBos or ChatTemplateKind.Llama2SysStrip:
                RenderLlama2(sb, kind, messages);
                break;
            case ChatTemplateKind.MistralV1 or ChatTemplateKind.MistralV3 or ChatTemplateKind.MistralV3Tekken:
                RenderMistral(sb, kind, messages);
                break;
            case ChatTemplateKind.MistralV7:
                foreach (var m in messages)
                {
                    if (m.Role == "system") sb.Append("[SYSTEM_PROMPT] ").Append(m.Content).Append("[/SYSTEM_PROMPT]");
                    else if (m.Role == "user") sb.Append("[INST] ").Append(m.Content).Append("[/INST]");
                    else sb.Append(' ').Append(m.Content).Append("</s>");
                }
                break;
            case ChatTemplateKind.Llama3:
                foreach (var m in messages)
                    sb.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(m.Content.Trim()).Append("<|eot_id|>");
                if (addGenerationPrompt) sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case ChatTemplateKind.Phi3:
                foreach (var m in messages) sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("<|end|>\n");
                if (addGenerationPrompt) sb.Append("<|assistant|>\n");
                break;
            case ChatTemplateKind.Zephyr:
                foreach (var m in messages) sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("<|endoftext|>\n");
                if (addGenerationPrompt) sb.Append("<|assistant|>\n");
                break;
            case ChatTemplateKind.Gemma:
                RenderGemma(sb, messages, addGenerationPrompt);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a chat template");
        }
        return sb.ToString();
    }

    /// <summary>[INST] turns; the system message goes inside the first one (in &lt;&lt;SYS&gt;&gt; where supported).</summary>
    private static void RenderLlama2(StringBuilder sb, ChatTemplateKind kind, IReadOnlyList<ChatMessage> messages)
    {
        bool system = kind != ChatTemplateKind.Llama2;
        bool bosInside = kind == ChatTemplateKind.Llama2SysBos;
        bool strip = kind == ChatTemplateKind.Llama2SysStrip;
        bool insideTurn = true; // the first [INST] follows the tokenizer's BOS
        sb.Append("[INST] ");
        foreach (var m in messages)
        {
            string content = strip ? m.Content.Trim() : m.Content;
            if (!insideTurn)
            {
                insideTurn = true;
                sb.Append(bosInside ? "<s>[INST] " : "[INST] ");
            }
            if (m.Role == "system")
            {
                if (system) sb.Append("<<SYS>>\n").Append(content).Append("\n<</SYS>>\n\n");
                else sb.Append(content).Append('\n');
            }
            else if (m.Role == "user") sb.Append(content).Append(" [/INST]");
            else
            {
                sb.Append(content).Append("</s>");
                insideTurn = false;
            }
        }
    }

    /// <summary>Mistral's official v1 / v3 / v3-tekken layouts, which differ only in spaces and trimming.</summary>
    private static void RenderMistral(StringBuilder sb, ChatTemplateKind kind, IReadOnlyList<ChatMessage> messages)
    {
        string lead = kind == ChatTemplateKind.MistralV1 ? " " : "";
        string trail = kind == ChatTemplateKind.MistralV3Tekken ? "" : " ";
        bool trimAssistant = kind == ChatTemplateKind.MistralV3;
        bool insideTurn = false;
        foreach (var m in messages)
        {
            if (!insideTurn)
            {
                sb.Append(lead).Append("[INST]").Append(trail);
                insideTurn = true;
            }
            if (m.Role == "system") sb.Append(m.Content).Append("\n\n");
            else if (m.Role == "user") sb.Append(m.Content).Append(lead).Append("[/INST]");
            else
            {
                sb.Append(trail).Append(trimAssistant ? m.Content.Trim() : m.Content).Append("</s>");
                insideTurn = false;
            }
        }
    }

    /// <summary>Gemma has no system role: the system text is merged into the next user turn; "assistant" is "model".</summary>
    private static void RenderGemma(StringBuilder sb, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        // System texts are collected in a builder (appending strings would copy the whole text per message).
        var system = new StringBuilder();
        foreach (var m in messages)
        {
            if (m.Role == "system") { system.Append(m.Content.AsSpan().Trim()); continue; }
            string role = m.Role == "assistant" ? "model" : m.Role;
            sb.Append("<start_of_turn>").Append(role).Append('\n');
            if (system.Length > 0 && role != "model")
            {
                sb.Append(system).Append("\n\n");
                system.Clear();
            }
            sb.Append(m.Content.AsSpan().Trim()).Append("<end_of_turn>\n");
        }
        if (addGenerationPrompt) sb.Append("<start_of_turn>model\n");
    }
}
