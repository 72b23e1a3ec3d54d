package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Renderings compared with Hugging Face's {@code apply_chat_template}: the references in test-data, and literal
 * strings that jinja2 3.1.6 rendered with transformers' settings (trim_blocks, lstrip_blocks) from the official
 * Llama-2-chat, Llama 3 Instruct and ChatML templates.
 */
class ChatTemplateTest {

    static final List<ChatMessage> ONE_TURN = List.of(ChatMessage.user("Hi there!"));
    static final List<ChatMessage> WITH_SYSTEM = List.of(ChatMessage.system("You are terse."), ChatMessage.user("Hi there!"),
            ChatMessage.assistant("Hello! How can I help?"), ChatMessage.user("  Tell me a joke.  "));
    static final List<ChatMessage> SEVERAL_TURNS = List.of(ChatMessage.user("Hi"), ChatMessage.assistant("Hello"),
            ChatMessage.user("Bye"));

    private static ChatTemplate llama2() {
        return ChatTemplate.of(BuiltInTemplate.LLAMA2.source(), "<s>", "</s>");
    }

    private static ChatTemplate llama3() {
        return ChatTemplate.of(BuiltInTemplate.LLAMA3.source(), "<|begin_of_text|>", "<|end_of_text|>");
    }

    private static ChatTemplate chatml() {
        return ChatTemplate.of(BuiltInTemplate.CHATML.source(), "<s>", "</s>");
    }

    @Test
    void tinyModelTemplateRendersHuggingFacesText() {
        JsonNode ref = ChatTestData.json("tiny-llama/refs.json").get("chat_template");
        ChatTemplate template = ChatTemplate.of(ChatTestData.tinyTemplate(), "<s>", "</s>");
        assertEquals(ref.get("text").asText(), template.render(ChatTestData.messages(ref.get("messages")), false));
        assertEquals(ref.get("text").asText(), template.render(ChatTestData.messages(ref.get("messages")), true));
        JsonNode two = ref.get("two_turn_prompt");
        assertEquals(two.get("text").asText(), template.render(ChatTestData.messages(two.get("messages")), true));
    }

    @Test
    void llama3TemplateRendersHuggingFacesText() {
        JsonNode ref = ChatTestData.json("tokenizers/reference-ids.json").get("llama3_chat");
        ChatTemplate template = ChatTemplate.of(ChatTestData.llama3Template(), "<|begin_of_text|>", "<|end_of_text|>");
        assertEquals(ref.get("text").asText(), template.render(ChatTestData.messages(ref.get("messages")), true));
    }

    @Test
    void builtInLlama2RendersLikeTheOfficialTemplate() {
        String withSystem = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there! [/INST] Hello! How can I help? </s>"
                + "<s>[INST] Tell me a joke. [/INST]";
        for (boolean generationPrompt : new boolean[] {true, false}) {
            assertEquals("<s>[INST] Hi there! [/INST]", llama2().render(ONE_TURN, generationPrompt));
            assertEquals(withSystem, llama2().render(WITH_SYSTEM, generationPrompt));
            assertEquals("<s>[INST] Hi [/INST] Hello </s><s>[INST] Bye [/INST]", llama2().render(SEVERAL_TURNS, generationPrompt));
        }
        JsonNode ref = ChatTestData.json("tiny-llama/refs.json").get("chat_template");
        assertEquals(ref.get("text").asText(), llama2().render(ChatTestData.messages(ref.get("messages")), true));
    }

    @Test
    void builtInLlama3RendersLikeTheOfficialTemplate() {
        String h = "<|start_header_id|>";
        String e = "<|end_header_id|>\n\n";
        assertEquals("<|begin_of_text|>" + h + "user" + e + "Hi there!<|eot_id|>" + h + "assistant" + e, llama3().render(ONE_TURN, true));
        assertEquals("<|begin_of_text|>" + h + "user" + e + "Hi there!<|eot_id|>", llama3().render(ONE_TURN, false));
        assertEquals("<|begin_of_text|>" + h + "system" + e + "You are terse.<|eot_id|>" + h + "user" + e + "Hi there!<|eot_id|>"
                + h + "assistant" + e + "Hello! How can I help?<|eot_id|>" + h + "user" + e + "Tell me a joke.<|eot_id|>"
                + h + "assistant" + e, llama3().render(WITH_SYSTEM, true));
        assertEquals("<|begin_of_text|>" + h + "user" + e + "Hi<|eot_id|>" + h + "assistant" + e + "Hello<|eot_id|>"
                + h + "user" + e + "Bye<|eot_id|>", llama3().render(SEVERAL_TURNS, false));
        JsonNode ref = ChatTestData.json("tokenizers/reference-ids.json").get("llama3_chat");
        assertEquals(ref.get("text").asText(), llama3().render(ChatTestData.messages(ref.get("messages")), true));
    }

    @Test
    void builtInChatMlRendersLikeTheOfficialTemplate() {
        assertEquals("<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n", chatml().render(ONE_TURN, true));
        assertEquals("<|im_start|>user\nHi there!<|im_end|>\n", chatml().render(ONE_TURN, false));
        assertEquals("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n"
                + "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\n  Tell me a joke.  <|im_end|>\n"
                + "<|im_start|>assistant\n", chatml().render(WITH_SYSTEM, true));
        assertEquals("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n",
                chatml().render(SEVERAL_TURNS, false));
    }

    @Test
    void rolesOutOfOrderRaiseTheTemplatesOwnMessage() {
        List<ChatMessage> twoUsers = List.of(ChatMessage.user("a"), ChatMessage.user("b"));
        for (ChatTemplate t : List.of(ChatTemplate.of(ChatTestData.tinyTemplate(), "<s>", "</s>"), llama2())) {
            ChatTemplateException e = assertThrows(ChatTemplateException.class, () -> t.render(twoUsers, true));
            assertTrue(e.getMessage().contains("Conversation roles must alternate user/assistant/user/assistant/..."), e.getMessage());
        }
    }

    @Test
    void brokenTemplateIsAClearError() {
        ChatTemplate t = ChatTemplate.of("{% for m in messages %}{{ m.content }", "", "");
        ChatTemplateException e = assertThrows(ChatTemplateException.class, () -> t.render(ONE_TURN, true));
        assertTrue(e.getMessage().startsWith("chat template error"), e.getMessage());
        assertThrows(ChatTemplateException.class, () -> ChatTemplate.of("  \n", "", ""));
    }

    @Test
    void messageTextIsNeverReadAsTemplateCode() {
        String typed = "{{ 7*7 }} {% raw %} {# x #} {{ bos_token }}";
        assertEquals("<|im_start|>user\n" + typed + "<|im_end|>\n", chatml().render(List.of(ChatMessage.user(typed)), false));
    }

    @Test
    void lastNewlineOfTheTemplateIsDroppedAndBlocksAreTrimmed() {
        String source = "{% for m in messages %}\n  {% if true %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}\nend\n";
        // jinja2 (trim_blocks, lstrip_blocks, no keep_trailing_newline) renders "[a]\n[b]\nend".
        assertEquals("[a]\n[b]\nend", ChatTemplate.of(source, "", "").render(List.of(ChatMessage.user("a"), ChatMessage.assistant("b")), false));
        assertEquals("x\ny", ChatTemplate.of("x\r\ny\r\n", "", "").render(ONE_TURN, false));
        // Only a tag that starts its line loses the indentation before it.
        assertEquals("a b d\ne", ChatTemplate.of("a {% if true %}b{% endif %} {# c #}d\n  {% if true %}\ne{% endif %}", "", "")
                .render(ONE_TURN, false));
    }

    @ParameterizedTest
    @CsvSource(delimiterString = " => ", quoteCharacter = '"', ignoreLeadingAndTrailingWhitespace = false, value = {
        // template => expected, as jinja2 renders it for messages [user 'u1', assistant 'a1', user 'u2']
        "{% if not add_generation_prompt is defined %}unset{% else %}set{% endif %} => set",
        "{% if not foo is defined %}unset{% endif %} => unset",
        "{% set ns = namespace(last=messages|length - 1, seen=false) %}{{ ns.last }} => 2",
        "{% for m in messages[::-1] %}{{ loop.index0 }}{{ m.content }} {% endfor %} => 0u2 1a1 2u1 ",
        "{{ messages[1:] | length }} {{ messages[-1]['content'] }} {{ messages[0].role }} => 2 u2 user",
        "{{ ('x' + messages[0]['content'] | upper + 'y') }} => xU1y",
        "{% for m in messages %}{% if loop.index0 == 2 %}{% break %}{% endif %}{{ m.content }}{% endfor %} => u1a1",
        "{{ '  a b  '.strip() }}.{{ 'x--y--z'.split('--') | join(',') }}.{{ 'a b'.replace(' ', '_') }} => a b.x,y,z.a_b",
        "{{ 'hello wORLD 2nd'.title() }} {{ 'hello World'.capitalize() }} => Hello World 2Nd Hello world",
        "{% if 'abc'.startswith('ab') and 'abc'.endswith(('x', 'c')) and not 'abc'.startswith('b') %}ok{% endif %} => ok",
    })
    void jinja2ExpressionsBehaveAsInJinja2(String template, String expected) {
        List<ChatMessage> conversation = List.of(ChatMessage.user("u1"), ChatMessage.assistant("a1"), ChatMessage.user("u2"));
        assertEquals(expected, ChatTemplate.of(template, "", "").render(conversation, true));
    }

    @Test
    void tojsonWritesPythonStyleJson() {
        ChatTemplate t = ChatTemplate.of("{{ messages | tojson }}|{{ messages[0] | tojson(indent=2) }}", "", "");
        assertEquals("[{\"role\": \"user\", \"content\": \"hé\\\"\\n\"}]|{\n  \"role\": \"user\",\n  \"content\": \"hé\\\"\\n\"\n}",
                t.render(List.of(ChatMessage.user("hé\"\n")), false));
    }

    @Test
    void huggingFaceExtensionsWork() {
        ChatTemplate t = ChatTemplate.of("{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
                + "{% if strftime_now is defined %}{{ strftime_now('%Y') }}{% endif %}", "", "");
        assertEquals("[Hi there!]" + java.time.Year.now().getValue(), t.render(ONE_TURN, true));
    }
}
