package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@code nibble generate} on the Q8_0 tiny model shipped in test-data (the README's main command). */
class GenerateCommandTest {

    static Path model() {
        Path p = CliRun.testData().resolve("tiny-llama.q8_0.gguf");
        assertTrue(Files.isRegularFile(p), p + " is missing");
        return p;
    }

    @Test
    void streamsThePromptAndItsContinuationAndTimesItOnStderr() {
        CliRun r = CliRun.of("generate", "-m", model().toString(), "-p", "The jury", "-n", "12", "--temperature", "0");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().startsWith("The jury"), r.out());
        assertTrue(r.out().strip().length() > "The jury".length() + 12, "twelve tokens of text: " + r.out());
        assertTrue(r.err().matches("(?s).*prompt 4 tokens, [0-9.]+ tok/s; generation 12 tokens, [0-9.]+ tok/s; stop: max tokens.*"),
                r.err());
    }

    @Test
    void aStopStringIsNotPrinted() {
        CliRun all = CliRun.of("generate", "-m", model().toString(), "-p", "The jury said", "-n", "30", "--temperature", "0");
        String text = all.out().strip();
        int of = text.indexOf(" of ", "The jury said".length());
        assertTrue(of > 0, "the greedy text has ' of ' in it: " + text);
        CliRun stopped = CliRun.of("generate", "-m", model().toString(), "-p", "The jury said", "-n", "30",
                "--temperature", "0", "--stop", " of ");
        assertEquals(0, stopped.exitCode(), stopped.err());
        assertEquals(text.substring(0, of), stopped.out().strip());
        assertTrue(stopped.err().contains("stop: stop string"), stopped.err());
    }

    @Test
    void theSameSeedPrintsTheSameText() {
        String[] args = {"generate", "-m", model().toString(), "-p", "In the morning", "-n", "16", "--seed", "17",
            "--temperature", "1.1", "--top-k", "0", "--top-p", "0.9", "--min-p", "0.02", "--repeat-penalty", "1.1",
            "--frequency-penalty", "0.1", "--presence-penalty", "0.1"};
        CliRun a = CliRun.of(args), b = CliRun.of(args);
        assertEquals(0, a.exitCode(), a.err());
        assertEquals(a.out(), b.out());
        assertTrue(a.err().contains("seed 17"), a.err());
    }

    @Test
    void aFullContextIsReportedNotCrashed() {
        CliRun r = CliRun.of("generate", "-m", model().toString(), "-p", "The jury said", "--ctx", "16", "--temperature", "0");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.err().contains("context of 16 tokens is full"), r.err());
    }

    @Test
    void aContextBeyondTheTrainedOneIsAllowedWithAWarning() {
        CliRun r = CliRun.of("generate", "-m", model().toString(), "-p", "The jury", "-n", "2", "--ctx", "1024");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.err().contains("warning: --ctx 1024 is beyond the 512 tokens"), r.err());
    }

    @Test
    void aPromptLongerThanTheContextIsAnErrorThatSaysWhatToDo() {
        CliRun r = CliRun.of("generate", "-m", model().toString(), "-p", "The jury said it was a very long day", "--ctx", "4");
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("nibble: error:") && r.err().contains("--ctx"), r.err());
    }

    @Test
    void anEmptyPromptGenerates() {
        CliRun r = CliRun.of("generate", "-m", model().toString(), "-p", "", "-n", "5", "--temperature", "0");
        assertEquals(0, r.exitCode(), r.err());
        assertFalse(r.out().isBlank());
        assertTrue(r.err().contains("prompt 1 tokens"), r.err());
    }

    @Test
    void aMissingModelIsAnErrorNamingIt() {
        CliRun r = CliRun.of("generate", "-m", "no-such-model.gguf", "-p", "x");
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("no-such-model.gguf"), r.err());
    }

    @Test
    void badSamplingOptionsAreRefused() {
        CliRun r = CliRun.of("generate", "-m", model().toString(), "-p", "x", "--top-p", "0");
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("top-p"), r.err());
    }
}
