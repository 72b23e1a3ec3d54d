package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code -m} given a folder: a Hugging Face one gets the command that converts it, any other is not a model. */
class ModelFolderTest {

    @TempDir
    Path dir;

    @Test
    void aHuggingFaceFolderIsRefusedWithTheConvertCommand() throws IOException {
        Path hf = Files.createDirectory(dir.resolve("Llama-3"));
        Files.writeString(hf.resolve("config.json"), "{}");
        Path text = Files.writeString(dir.resolve("t.txt"), "The jury");
        String expected = "nibble: error: " + hf + " is a Hugging Face model folder; make a GGUF file of it first: "
                + "nibble convert " + hf + " -o " + hf + ".gguf --type q4_k_m\n";
        for (String[] args : new String[][] {
                {"generate", "-m", hf.toString(), "-p", "x"},
                {"chat", "-m", hf.toString()},
                {"perplexity", "-m", hf.toString(), "-f", text.toString()}}) {
            CliRun r = CliRun.of(args);
            assertEquals(1, r.exitCode(), args[0]);
            assertEquals(expected, r.err(), args[0]);
        }
        // tokenize reads the folder itself (here: its missing tokenizer is the problem named)
        CliRun tokenize = CliRun.of("tokenize", "-m", hf.toString(), "x");
        assertEquals(1, tokenize.exitCode());
        assertEquals(1, tokenize.err().lines().count(), tokenize.err());
        assertEquals(0, CliRun.of("tokenize", "-m", CliRun.testData().resolve("tiny-llama/safetensors").toString(), "x")
                .exitCode());
    }

    @Test
    void aFolderThatIsNoModelIsOneLine() {
        assertEquals("nibble: error: " + dir + " is a folder, not a model; give -m a .gguf file\n",
                CliRun.of("generate", "-m", dir.toString(), "-p", "x").err());
        CliRun tokenize = CliRun.of("tokenize", "-m", dir.toString(), "x");
        assertEquals(1, tokenize.exitCode());
        assertEquals("nibble: error: " + dir + " is a folder, not a model; give -m a .gguf file or a Hugging Face model "
                + "folder\n", tokenize.err());
    }

    @Test
    void theCommandIsQuotedForTheShellWhereItMustBe() {
        assertEquals("nibble convert '/m/My Llama' -o '/m/My Llama.gguf' --type q4_k_m",
                ModelOption.convertCommand(Path.of("/m/My Llama/")));
        assertEquals("nibble convert models/llama -o models/llama.gguf --type q4_k_m",
                ModelOption.convertCommand(Path.of("models/llama")));
    }
}
