package dev.nibble.converter;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ChatTemplateSourceTest {

    @TempDir
    Path dir;

    @Test
    void tinyLlamaTemplateComesFromTokenizerConfig() throws IOException {
        String expected = new ObjectMapper().readTree(TestData.tinySafetensors().resolve("tokenizer_config.json").toFile())
                .get("chat_template").textValue();
        Optional<String> t = ChatTemplateSource.find(TestData.tinySafetensors());
        assertEquals(Optional.of(expected), t);
        assertTrue(expected.contains("[INST]"));
    }

    @Test
    void defaultIsPickedFromNamedTemplates() throws IOException {
        Files.writeString(dir.resolve("tokenizer_config.json"), """
                {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}""");
        assertEquals(Optional.of("D"), ChatTemplateSource.find(dir));
    }

    @Test
    void jinjaFileIsUsedWhenTokenizerConfigHasNone() throws IOException {
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"add_bos_token\": true}");
        Files.writeString(dir.resolve("chat_template.jinja"), "{{ messages[0]['content'] }}\n");
        assertEquals(Optional.of("{{ messages[0]['content'] }}\n"), ChatTemplateSource.find(dir));
    }

    @Test
    void noTemplateAnywhereIsEmpty() throws IOException {
        assertEquals(Optional.empty(), ChatTemplateSource.find(dir));
    }
}
