package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** NIBBLE_MODEL, NIBBLE_THREADS, NIBBLE_CTX and NIBBLE_DEVICE: defaults that the command line overrides. */
class EnvironmentDefaultsTest {

    private static final String M = GenerateCommandTest.model().toString();

    static CliRun run(Map<String, String> environment, String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        var cl = Nibble.commandLine(environment);
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        int code = cl.execute(args);
        return new CliRun(code, out.toString(), err.toString());
    }

    @Test
    void theVariablesGiveDefaults() {
        Map<String, String> env = Map.of("NIBBLE_MODEL", M, "NIBBLE_THREADS", "1", "NIBBLE_CTX", "16",
                "NIBBLE_DEVICE", "cpu");
        CliRun r = run(env, "generate", "-p", "The jury said", "--temp", "0");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.err().contains("nibble: device: cpu") && r.err().contains("(1 threads)")
                && !r.err().contains("auto:"), r.err());
        assertTrue(r.err().contains("context of 16 tokens is full"), r.err());
        assertEquals(0, run(env, "tokenize", "The jury").exitCode());
    }

    @Test
    void theCommandLineWins() {
        Map<String, String> env = Map.of("NIBBLE_MODEL", "elsewhere.gguf", "NIBBLE_THREADS", "3", "NIBBLE_CTX", "16");
        CliRun r = run(env, "generate", "-m", M, "-p", "The jury said", "--temp", "0", "-n", "20", "-t", "1", "-c", "64");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.err().contains("(1 threads)") && r.err().contains("stop: max tokens"), r.err());
    }

    @Test
    void aBadValueNamesTheVariable() {
        CliRun threads = run(Map.of("NIBBLE_THREADS", "four"), "generate", "-m", M, "-p", "x");
        assertEquals(2, threads.exitCode());
        assertEquals("nibble: error: NIBBLE_THREADS=four is not a whole number of CPU threads (0: one per CPU); correct "
                + "or unset it, or give --threads; see nibble generate --help\n", threads.err());
        CliRun device = run(Map.of("NIBBLE_DEVICE", "gpu"), "chat", "-m", M);
        assertEquals(2, device.exitCode());
        assertTrue(device.err().startsWith("nibble: error: NIBBLE_DEVICE=gpu is not auto, cpu, cuda or cuda:N"), device.err());
        CliRun model = run(Map.of("NIBBLE_MODEL", "no-such.gguf"), "generate", "-p", "x");
        assertEquals(1, model.exitCode());
        assertEquals("nibble: error: NIBBLE_MODEL=no-such.gguf: no such model file; give -m a .gguf file\n", model.err());
    }

    @Test
    void onlyWhereTheyApply() {
        // perplexity's -c is its window: NIBBLE_CTX does not change it; convert has no NIBBLE_MODEL.
        String help = run(Map.of("NIBBLE_CTX", "4096"), "perplexity", "--help").out();
        assertTrue(help.contains("(default 512"), help);
        assertFalse(help.contains("NIBBLE_CTX"), help);
    }
}
