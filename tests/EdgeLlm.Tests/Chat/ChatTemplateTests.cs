using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Chat;

/// <summary>Rendering against hand-written expected prompts (llama.cpp's layouts) and detection from real template snippets.</summary>
public class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation =
    [
        new("system", "test"), new("user", "hello"), new("assistant", "response"), new("user", "again"),
    ];

    [Theory]
    [InlineData("chatml", "<|im_start|>system\ntest<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nresponse<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData("llama2", "[INST] test\nhello [/INST]response</s>[INST] again [/INST]")]
    [InlineData("llama2-sys", "[INST] <<SYS>>\ntest\n<</SYS>>\n\nhello [/INST]response</s>[INST] again [/INST]")]
    [InlineData("llama2-sys-bos", "[INST] <<SYS>>\ntest\n<</SYS>>\n\nhello [/INST]response</s><s>[INST] again [/INST]")]
    [InlineData("llama2-sys-strip", "[INST] <<SYS>>\ntest\n<</SYS>>\n\nhello [/INST]response</s>[INST] again [/INST]")]
    [InlineData("mistral-v1", " [INST] test\n\nhello [/INST] response</s> [INST] again [/INST]")]
    [InlineData("mistral-v3", "[INST] test\n\nhello[/INST] response</s>[INST] again[/INST]")]
    [InlineData("mistral-v3-tekken", "[INST]test\n\nhello[/INST]response</s>[INST]again[/INST]")]
    [InlineData("mistral-v7", "[SYSTEM_PROMPT] test[/SYSTEM_PROMPT][INST] hello[/INST] response</s>[INST] again[/INST]")]
    [InlineData("llama3", "<|start_header_id|>system<|end_header_id|>\n\ntest<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nresponse<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nagain<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [InlineData("phi3", "<|system|>\ntest<|end|>\n<|user|>\nhello<|end|>\n<|assistant|>\nresponse<|end|>\n<|user|>\nagain<|end|>\n<|assistant|>\n")]
    [InlineData("zephyr", "<|system|>\ntest<|endoftext|>\n<|user|>\nhello<|endoftext|>\n<|assistant|>\nresponse<|endoftext|>\n<|user|>\nagain<|endoftext|>\n<|assistant|>\n")]
    [InlineData("gemma", "<start_of_turn>user\ntest\n\nhello<end_of_turn>\n<start_of_turn>model\nresponse<end_of_turn>\n<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n")]
    public void Renders_the_llama_cpp_layout(string name, string expected)
    {
        var kind = ChatTemplates.FromName(name)!.Value;
        Assert.Equal(expected, ChatTemplates.Render(kind, Conversation, addGenerationPrompt: true));
    }

    [Fact]
    public void Strip_variant_trims_and_others_keep_spaces()
    {
        ChatMessage[] m = [new("user", "  hi  ")];
        Assert.Equal("[INST] hi [/INST]", ChatTemplates.Render(ChatTemplateKind.Llama2SysStrip, m, true));
        Assert.Equal("[INST]   hi   [/INST]", ChatTemplates.Render(ChatTemplateKind.Llama2Sys, m, true));
        Assert.Equal("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", ChatTemplates.Render(ChatTemplateKind.Llama3, m, false));
        Assert.Equal("<|im_start|>user\n  hi  <|im_end|>\n", ChatTemplates.Render(ChatTemplateKind.ChatMl, m, false));
    }

    [Theory]
    // SmolLM2 / Qwen style
    [InlineData("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}", "chatml")]
    // Llama-2-chat (HF)
    [InlineData("{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}{% endfor %}", "llama2-sys-strip")]
    [InlineData("{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}{% endif %}{% endfor %}", "llama2-sys-bos")]
    [InlineData("{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}{% endfor %}", "llama2-sys")]
    // Mistral-7B-Instruct-v0.2
    [InlineData("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}", "llama2")]
    [InlineData("{%- if messages[0]['role'] == 'system' %}{{- bos_token }}{%- for message in loop_messages %}{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}{%- endfor %}", "mistral-v1")]
    [InlineData("{{- bos_token }}{%- if tools is not none %}{{- \"[AVAILABLE_TOOLS] [\" }}{%- endif %}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}", "mistral-v3")]
    [InlineData("{{- bos_token }}{%- if tools %}{{- \"[AVAILABLE_TOOLS]\" }}{%- endif %}{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}", "mistral-v3-tekken")]
    [InlineData("{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}{%- elif message['role'] == 'user' %}{{- '[INST]' + message['content'] + '[/INST]' }}{%- endif %}", "mistral-v7")]
    // Llama-3-Instruct
    [InlineData("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% endfor %}", "llama3")]
    // Phi-3-mini
    [InlineData("{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% endif %}{% endfor %}", "phi3")]
    // Zephyr
    [InlineData("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% endif %}{% endfor %}", "zephyr")]
    // Gemma
    [InlineData("{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}", "gemma")]
    public void Detects_real_templates_by_markers(string template, string expected)
    {
        Assert.Equal(expected, ChatTemplates.Name(ChatTemplates.Detect(template)!.Value));
    }

    [Fact]
    public void Unknown_template_falls_back_to_chatml_with_a_warning_and_override_wins()
    {
        Assert.Null(ChatTemplates.Detect("{{ messages | tojson }}"));
        Assert.Equal(ChatTemplateKind.ChatMl, ChatTemplates.Resolve("{{ messages | tojson }}", null, out string? w));
        Assert.Contains("falling back to chatml", w);
        Assert.Equal(ChatTemplateKind.ChatMl, ChatTemplates.Resolve(null, null, out w));
        Assert.NotNull(w);
        Assert.Equal(ChatTemplateKind.Gemma, ChatTemplates.Resolve("<|im_start|>", "gemma", out w));
        Assert.Null(w);
        Assert.Throws<EdgeLlmException>(() => ChatTemplates.Resolve(null, "nope", out _));
    }

    [Fact]
    public void End_of_turn_tokens_per_template()
    {
        Assert.Equal(["<|eot_id|>"], ChatTemplates.EndOfTurnTokens(ChatTemplateKind.Llama3));
        Assert.Equal(["<|im_end|>"], ChatTemplates.EndOfTurnTokens(ChatTemplateKind.ChatMl));
        Assert.Equal(["<|end|>"], ChatTemplates.EndOfTurnTokens(ChatTemplateKind.Phi3));
        Assert.Equal(["<end_of_turn>"], ChatTemplates.EndOfTurnTokens(ChatTemplateKind.Gemma));
        Assert.Equal(["</s>"], ChatTemplates.EndOfTurnTokens(ChatTemplateKind.Llama2Sys));
    }
}
