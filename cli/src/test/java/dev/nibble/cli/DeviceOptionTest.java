package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.runtime.nativelib.NibbleCuda;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** {@code --device} and {@code --gpu-memory} as a user meets them on a machine without a GPU (as CI is). */
class DeviceOptionTest {

    private static void assumeNoGpu() {
        Assumptions.assumeTrue(NibbleCuda.unavailable().isPresent(), "this machine has a usable GPU");
    }

    @Test
    void cudaWithoutAGpuIsOneLineAndExitCodeOne() {
        assumeNoGpu();
        for (String command : new String[] {"generate", "perplexity", "bench", "chat"}) {
            String[] args = switch (command) {
                case "generate" -> new String[] {"generate", "-m", GenerateCommandTest.model().toString(), "-p", "Hi",
                    "--device", "cuda"};
                case "perplexity" -> new String[] {"perplexity", "-m", GenerateCommandTest.model().toString(), "-f",
                    CliRun.testData().resolve("tiny-llama/val.txt").toString(), "--device", "cuda:0"};
                case "bench" -> new String[] {"bench", "-m", GenerateCommandTest.model().toString(), "--device", "cuda"};
                default -> new String[] {"chat", "-m", GenerateCommandTest.model().toString(), "--device", "cuda"};
            };
            CliRun r = CliRun.of(args);
            assertEquals(1, r.exitCode(), command + ": " + r.err());
            String[] lines = r.err().strip().split("\n");
            assertEquals(1, lines.length, command + ": " + r.err());
            assertTrue(lines[0].startsWith("nibble: error: --device cuda"), lines[0]);
            assertTrue(lines[0].endsWith("use --device cpu"), lines[0]);
        }
    }

    @Test
    void autoTakesTheCpuAndSaysWhyInOneLine() {
        assumeNoGpu();
        CliRun r = CliRun.of("generate", "-m", GenerateCommandTest.model().toString(), "-p", "The jury", "-n", "3",
                "--temperature", "0");
        assertEquals(0, r.exitCode(), r.err());
        String line = r.err().lines().filter(l -> l.startsWith("nibble: device:")).findFirst().orElse("");
        assertTrue(line.matches("nibble: device: cpu \\S+ \\(\\d+ threads\\) \\(auto: .+\\)"), r.err());
    }

    @Test
    void malformedDeviceAndMemoryValuesAreRefusedByName() {
        CliRun bad = CliRun.of("generate", "-m", GenerateCommandTest.model().toString(), "-p", "x", "--device", "gpu");
        assertEquals(1, bad.exitCode());
        assertTrue(bad.err().contains("--device gpu is not one of auto, cpu, cuda, cuda:N"), bad.err());
        CliRun index = CliRun.of("generate", "-m", GenerateCommandTest.model().toString(), "-p", "x", "--device", "cuda:x");
        assertTrue(index.err().contains("the GPU index must be a number"), index.err());
        CliRun size = CliRun.of("generate", "-m", GenerateCommandTest.model().toString(), "-p", "x", "--device", "cpu",
                "--gpu-memory", "lots");
        assertEquals(1, size.exitCode());
        assertTrue(size.err().contains("'lots' is not a size"), size.err());
    }
}
