package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/** {@code generate --json}, {@code --no-display-prompt} and {@code --quiet}: output a script can use as it is. */
class ScriptableOutputTest {

    private static final String M = GenerateCommandTest.model().toString();

    @Test
    void jsonIsOneObjectWithTheTextAndEverythingAboutIt() throws IOException {
        CliRun r = CliRun.of("generate", "-m", M, "-p", "The jury", "-n", "12", "--temp", "0", "--seed", "17", "--json");
        assertEquals(0, r.exitCode(), r.err());
        assertEquals(1, r.out().lines().count(), r.out());
        JsonNode o = new ObjectMapper().readTree(r.out());
        assertEquals("max_tokens", o.get("finish_reason").asText());
        assertEquals(4, o.at("/tokens/prompt").asInt());
        assertEquals(12, o.at("/tokens/generated").asInt());
        assertTrue(o.at("/timings/generation_tokens_per_second").isNumber() && o.at("/timings/prompt_ms").isNumber(), r.out());
        assertEquals(17, o.get("seed").asLong());
        assertEquals("tiny-llama.q8_0.gguf", o.get("model").asText());
        assertEquals(0.0, o.at("/sampling/temperature").asDouble());
        assertEquals("--temperature 0", o.at("/sampling/source").asText());
        assertFalse(r.err().contains("tok/s"), "no timing line: " + r.err());

        CliRun text = CliRun.of("generate", "-m", M, "-p", "The jury", "-n", "12", "--temp", "0", "--no-display-prompt");
        assertEquals(o.get("text").asText() + "\n", text.out());
        assertFalse(text.out().startsWith("The jury"), text.out());
    }

    @Test
    void jsonInChatModeNamesTheTemplate() throws IOException {
        CliRun r = CliRun.of("generate", "-m", M, "--chat", "-p", "Who won?", "-n", "6", "--temp", "0", "--json",
                "--template", "chatml");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode o = new ObjectMapper().readTree(r.out());
        assertTrue(o.get("template").asText().startsWith("built-in chatml"), r.out());
        assertTrue(o.at("/tokens/generated").asInt() <= 6 && o.has("finish_reason") && o.has("text"), r.out());
    }

    @Test
    void quietLeavesOnlyTheText() {
        CliRun r = CliRun.of("generate", "-m", M, "-p", "The jury", "-n", "6", "--temp", "0", "--quiet");
        assertEquals(0, r.exitCode(), r.err());
        assertEquals("", r.err());
        assertTrue(r.out().startsWith("The jury"), r.out());
        CliRun loud = CliRun.of("generate", "-m", M, "-p", "The jury", "-n", "6", "--temp", "0");
        assertEquals(loud.out(), r.out());
        assertTrue(loud.err().contains("nibble: device: ") && loud.err().contains("; sampling: --temperature 0\n"),
                loud.err());
    }
}
