package dev.nibble.runtime.chat;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.testing.FuzzChecks;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Coverage-guided fuzzing of chat-template rendering with hostile templates: whatever the template, rendering a short
 * conversation gives its text or one ChatTemplateException with a one-line message, within the render time limit
 * (shortened to one second here) and the output bound. Seeds: the built-in templates, the real templates of
 * test-data/tokenizers, and hostile ones (deep nesting, huge loops, recursion, long output), written by {@link #main}.
 */
class ChatTemplateFuzzTest {

    private static final List<ChatMessage> CONVERSATION = List.of(new ChatMessage("system", "Be brief."),
            new ChatMessage("user", "Hi {{ not code }} <s>\n\u00e9\uD83D\uDE00"), new ChatMessage("assistant", "Hello."),
            new ChatMessage("user", "Bye"));

    @FuzzTest(maxDuration = "60s")
    void template(byte[] data) throws Exception {
        String source = new String(data, StandardCharsets.UTF_8);
        // Time only: a template that loops may allocate (and drop) much more than its size before its time is up; what
        // it holds at once is bounded by the output, string and collection limits, and the fuzzer's heap catches more.
        FuzzChecks.timely(data.length, () -> render(source));
    }

    private static void render(String source) {
        long saved = ChatTemplate.renderNanos;
        ChatTemplate.renderNanos = 1_000_000_000L;
        try {
            String out = ChatTemplate.of(source, "<s>", "</s>").render(CONVERSATION, true);
            if (out.length() > ChatTemplate.MAX_OUTPUT_CHARS) {
                throw new AssertionError("rendered " + out.length() + " characters, beyond the bound");
            }
        } catch (ChatTemplateException e) {
            FuzzChecks.cleanRefusal(e);
        } finally {
            ChatTemplate.renderNanos = saved;
        }
    }

    /** Writes the seed inputs into {@code args[0]} (the runtime module's directory); test-data is read from args[1]. */
    public static void main(String[] args) throws IOException {
        Map<String, String> seeds = new LinkedHashMap<>();
        for (BuiltInTemplate t : BuiltInTemplate.values()) {
            seeds.put("builtin-" + t.cliName(), t.source());
        }
        ObjectMapper json = new ObjectMapper();
        for (String model : List.of("llama2", "llama3", "mistral")) {
            JsonNode config = json.readTree(Path.of(args[1], "tokenizers", model, "tokenizer_config.json").toFile());
            if (config.path("chat_template").isTextual()) {
                seeds.put("real-" + model, config.path("chat_template").asText());
            }
        }
        seeds.put("nested-if-300", "{% if true %}".repeat(300) + "x" + "{% endif %}".repeat(300));
        seeds.put("nested-for-300", "{% for i in range(2) %}".repeat(300) + "x" + "{% endfor %}".repeat(300));
        seeds.put("nested-parens", "{{ " + "(".repeat(3000) + "1" + ")".repeat(3000) + " }}");
        seeds.put("billion-iterations", "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}x"
                + "{% endfor %}{% endfor %}{% endfor %}");
        seeds.put("macro-recursion", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}");
        seeds.put("macro-in-loops", "{% macro f() %}{% for i in range(1000) %}{{ i }}{% endfor %}{% endmacro %}"
                + "{% for k in range(1000) %}{% for j in range(1000) %}{{ f() }}{% endfor %}{% endfor %}");
        seeds.put("string-doubling", "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                + "{% endfor %}{{ ns.s|length }}");
        seeds.put("list-doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}"
                + "{% endfor %}{{ ns.l|length }}");
        seeds.put("center", "{{ 'x'|center(1000000000) }}");
        seeds.put("indent", "{{ 'a\\nb'|indent(1000000000) }}");
        seeds.put("replace-chain", "{{ range(999)|join(',')|replace(',', range(999)|join(','))|replace(',', 'abcdef') }}");
        seeds.put("python-replace", "{{ ('ab' * 3)|string }}{{ messages[1].content.replace('', messages[1].content) }}");
        seeds.put("format-width", "{{ '%0999999999d'|format(1) }}");
        seeds.put("tojson-indent", "{{ range(100000)|list|tojson(indent=1000000) }}");
        seeds.put("many-open-braces", "{{{{{{{{".repeat(1000));
        seeds.put("raise", "{{ raise_exception('multi\\nline\\rmessage') }}");
        seeds.put("include", "{% include 'META-INF/MANIFEST.MF' %}");
        seeds.put("regex", "{{ 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'|regex_replace('(a+)+b', 'x') }}");
        seeds.put("unclosed", "{% for m in messages %}{{ m.content }}");
        Path dir = Path.of(args[0], "src/test/resources/dev/nibble/runtime/chat/ChatTemplateFuzzTestInputs/template");
        Files.createDirectories(dir);
        for (Map.Entry<String, String> e : seeds.entrySet()) {
            Files.writeString(dir.resolve(e.getKey()), e.getValue());
        }
    }
}
