package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The command line people know from llama.cpp: its spellings, its flags nibble has no use for, one-line usage errors. */
class LlamaCppCommandLineTest {

    private static final String M = GenerateCommandTest.model().toString();

    @TempDir
    Path dir;

    @Test
    void llamaCppSpellingsGiveWhatNibblesOwnGive() throws IOException {
        CliRun llama = CliRun.of("generate", "-m", M, "-p", "The jury", "--predict", "8", "--temp", "0", "-c", "64",
                "-t", "1", "-s", "5", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.05", "--repeat-penalty", "1.1");
        CliRun nibble = CliRun.of("generate", "--model", M, "--prompt", "The jury", "--n-predict", "8", "--temperature", "0",
                "--ctx", "64", "--threads", "1", "--seed", "5", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.05",
                "--repeat-penalty", "1.1");
        assertEquals(0, llama.exitCode(), llama.err());
        assertEquals(nibble.out(), llama.out());
        assertTrue(llama.err().contains("(1 threads)") && llama.err().contains("seed 5"), llama.err());
        Path prompt = dir.resolve("prompt.txt");
        Files.writeString(prompt, "The jury");
        CliRun file = CliRun.of("generate", "-m", M, "-f", prompt.toString(), "-n", "8", "--temp", "0");
        CliRun inline = CliRun.of("generate", "-m", M, "-p", "The jury", "-n", "8", "--temp", "0");
        assertEquals(0, file.exitCode(), file.err());
        assertEquals(inline.out(), file.out());
    }

    @Test
    void flagsNibbleHasNoUseForAreAcceptedWithOneLineEachSayingWhatNibbleDoes() {
        CliRun plain = CliRun.of("generate", "-m", M, "-p", "The jury", "-n", "4", "--temp", "0");
        CliRun r = CliRun.of("generate", "-m", M, "-p", "The jury", "-n", "4", "--temp", "0", "-ngl", "99", "-fa", "--mlock");
        assertEquals(0, r.exitCode(), r.err());
        assertEquals(plain.out(), r.out());
        List<String> warnings = r.err().lines().filter(l -> l.startsWith("nibble: warning:")).toList();
        assertEquals(List.of(
                "nibble: warning: -fa ignored: nibble's attention is always fused (flash-decoding on the GPU); there is "
                        + "nothing to switch",
                "nibble: warning: --mlock ignored: nibble maps the model file and leaves paging to the OS; pinning it is "
                        + "not supported"), warnings);
        // -ngl is --gpu-layers: without a GPU (as in CI) the device line says it is ignored; with one, all layers go there
        String device = r.err().lines().filter(l -> l.startsWith("nibble: device: ")).findFirst().orElseThrow();
        assertTrue(device.startsWith("nibble: device: cpu ") ? device.endsWith("; --gpu-layers is ignored without a GPU)")
                : device.contains(", --gpu-layers 99"), device);
        CliRun bench = CliRun.of("bench", "-m", M, "-p", "8", "-n", "2", "-r", "1", "--n-gpu-layers", "99", "-c", "32");
        assertEquals(0, bench.exitCode(), bench.err());
        assertTrue(bench.err().contains("--gpu-layers"), bench.err());
        CliRun bad = CliRun.of("generate", "-m", M, "-p", "x", "-ngl", "many");
        assertEquals("nibble: error: --gpu-layers many is not a number of layers; give 0 or more, all, or auto\n",
                bad.err());
    }

    @Test
    void everyRunningCommandTakesTheSameSpellings() {
        for (String command : List.of("generate", "chat", "batch", "serve", "perplexity", "bench")) {
            String help = CliRun.of(command, "--help").out();
            assertTrue(help.contains("-c, --ctx, --ctx-size=N") || help.contains("-c, --ctx-size, --ctx=N"), command + help);
            assertTrue(help.contains("-t, --threads=N") && help.contains("--device=DEVICE"), command + help);
            if (!command.equals("perplexity") && !command.equals("bench")) {
                assertTrue(help.contains("--temp, --temperature=T") && help.contains("-s, --seed=SEED")
                        && help.contains("--predict") && help.contains("--top-k=K") && help.contains("--repeat-penalty=X"),
                        command + help);
            }
            assertTrue(help.contains("Examples:\n  nibble " + command), command + help);
            assertTrue(help.contains("llama.cpp's -fa, --mlock"), command + help);
            assertTrue(help.contains("-ngl, --gpu-layers, --n-gpu-layers=N"), command + help);
        }
        assertTrue(CliRun.of("generate", "--help").out().contains(
                "Environment: NIBBLE_MODEL (-m), NIBBLE_THREADS (-t), NIBBLE_CTX (-c),\nNIBBLE_DEVICE (--device)"));
    }

    @Test
    void aUsageErrorIsOneLineAndWhereToLook() {
        CliRun ngl = CliRun.of("generate", "-m", M, "-p", "x", "-nn", "99");
        assertEquals(2, ngl.exitCode());
        assertEquals("nibble: error: Unknown options: '-nn', '99'; see nibble generate --help\n", ngl.err());
        CliRun typo = CliRun.of("generate", "-m", M, "-p", "x", "--temprature", "0");
        assertEquals(2, typo.exitCode());
        assertEquals(1, typo.err().lines().count(), typo.err());
        assertTrue(typo.err().contains("(did you mean ") && typo.err().contains("--temperature")
                && typo.err().endsWith("; see nibble generate --help\n"), typo.err());
        CliRun missing = CliRun.of("chat", "--temp", "0");
        assertEquals(2, missing.exitCode());
        assertEquals("nibble: error: Missing required option: '--model=MODEL'; see nibble chat --help\n", missing.err());
        CliRun command = CliRun.of("genrate");
        assertEquals(2, command.exitCode());
        assertTrue(command.err().startsWith("nibble: error: Unmatched argument at index 0: 'genrate' (did you mean generate")
                && command.err().endsWith("?); see nibble --help\n"), command.err());
        assertEquals("", command.out());
    }

    @Test
    void completionScriptsForBashAndZsh() {
        CliRun bash = CliRun.of("completion", "bash");
        assertEquals(0, bash.exitCode(), bash.err());
        assertTrue(bash.out().contains("complete -F") && bash.out().contains("'--ctx-size'")
                && bash.out().contains("'--temp'") && !bash.out().contains("'-fa'"), "hidden flags are not offered");
        CliRun zsh = CliRun.of("completion", "zsh");
        assertEquals(bash.out(), zsh.out());
        assertTrue(zsh.out().contains("bashcompinit"));
        CliRun fish = CliRun.of("completion", "fish");
        assertEquals(2, fish.exitCode());
        assertEquals(1, fish.err().lines().count(), fish.err());
    }

    @Test
    void manPagesForEveryCommandWithTheirExamples() throws IOException {
        ManPages.main(new String[] {dir.toString()});
        for (String page : List.of("nibble", "nibble-generate", "nibble-chat", "nibble-completion", "nibble-tokenize")) {
            assertTrue(Files.isRegularFile(dir.resolve(page + ".adoc")), page);
        }
        String generate = Files.readString(dir.resolve("nibble-generate.adoc"));
        assertTrue(generate.contains("= nibble-generate(1)") && generate.contains("--ctx-size")
                && generate.contains("nibble generate -m model.gguf -f prompt.txt --no-display-prompt --quiet"), generate);
    }
}
