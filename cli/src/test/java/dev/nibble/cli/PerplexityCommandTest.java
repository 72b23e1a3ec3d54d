package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code nibble perplexity} on a slice of the held-out text, with the shipped Q8_0 tiny model. */
class PerplexityCommandTest {

    @TempDir
    Path dir;

    @Test
    void reportsPerplexityAndTheTokensAndWindowsItScored() throws Exception {
        String val = Files.readString(CliRun.testData().resolve("tiny-llama/val.txt"));
        Path text = dir.resolve("slice.txt");
        Files.writeString(text, val.substring(0, 3000));
        CliRun r = CliRun.of("perplexity", "-m", GenerateCommandTest.model().toString(), "-f", text.toString(), "--ctx", "128");
        assertEquals(0, r.exitCode(), r.err());
        Matcher m = Pattern.compile("perplexity ([0-9.]+) over ([0-9]+) tokens \\(ctx 128, ([0-9]+) windows").matcher(r.out());
        assertTrue(m.find(), r.out());
        double ppl = Double.parseDouble(m.group(1));
        int tokens = Integer.parseInt(m.group(2)), windows = Integer.parseInt(m.group(3));
        assertEquals((tokens + 126) / 127, windows);
        // the model scores about 74 on the whole file; a slice of it lands in the same range, far below uniform (2048)
        assertTrue(ppl > 20 && ppl < 300, "perplexity " + ppl);
    }

    @Test
    void aContextBeyondTheModelsIsRefused() throws Exception {
        Path text = dir.resolve("t.txt");
        Files.writeString(text, "The jury said.");
        CliRun r = CliRun.of("perplexity", "-m", GenerateCommandTest.model().toString(), "-f", text.toString(), "--ctx", "4096");
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("--ctx") && r.err().contains("512"), r.err());
    }
}
