package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.gguf.GgufTensorInfo;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A conversion killed by a signal (as by Ctrl-C) leaves neither the output nor its temporary file. */
class InterruptedConversionTest {

    @TempDir
    Path dir;

    /** Child process: converts slowly, announcing on stdout when the temporary file is being written. */
    static final class SlowConversion {
        public static void main(String[] args) throws IOException {
            ConversionProgress slow = new ConversionProgress() {
                private boolean announced;

                @Override
                public void start(long totalBytes, int tensorCount) {
                }

                @Override
                public void tensor(int index, GgufTensorInfo info) {
                }

                @Override
                public void advance(long bytes) {
                    if (!announced) {
                        announced = true;
                        System.out.println("writing");
                        System.out.flush();
                    }
                    try {
                        Thread.sleep(100);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }

                @Override
                public void done() {
                }
            };
            Converter.convert(ConvertOptions.of(Path.of(args[0]), Path.of(args[1]), Recipe.F32).withProgress(slow));
            System.out.println("finished");
        }
    }

    @Test
    void terminatedConversionLeavesNoFiles() throws Exception {
        Path model = SyntheticModel.write(dir.resolve("model"), new SyntheticModel.Shape(64, 2, 4, 2, 96, 2048, false), 31);
        Path out = dir.resolve("out.gguf");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process child = new ProcessBuilder(java.toString(), "-cp", System.getProperty("java.class.path"),
                SlowConversion.class.getName(), model.toString(), out.toString())
                .redirectError(ProcessBuilder.Redirect.DISCARD).start();
        try (BufferedReader stdout = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            assertEquals("writing", stdout.readLine());
            assertEquals(1, BadInputTest.temporaries(dir).size(), "the temporary file exists while writing");
            child.destroy();
            assertTrue(child.waitFor(30, TimeUnit.SECONDS), "the child exits on SIGTERM");
        } finally {
            child.destroyForcibly();
        }
        assertFalse(Files.exists(out), "no output file");
        assertEquals(List.of(), BadInputTest.temporaries(dir), "the shutdown hook removed the temporary file");
    }
}
