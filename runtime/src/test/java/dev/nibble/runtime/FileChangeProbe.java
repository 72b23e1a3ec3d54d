package dev.nibble.runtime;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.nativelib.NativeKernelException;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A child process for {@link ModelFileChangeTest}: generates text from a model on the CPU backend, over and over, until
 * a pass fails; then does what the CLI does with an error (one line on stderr, exit status 1), after checking that the
 * next pass fails with the same message. Prints {@code running} once the first token is out, and {@code via=fault}
 * (a kernel's read faulted) or {@code via=check} (the check before a pass saw the change) before it exits.
 * {@code generate MODEL}: the test changes the file from outside. {@code kernel MODEL}: the backend itself truncates
 * the file just before its 40th matmul, so that the fault happens inside a kernel, after the check of that pass.
 */
public final class FileChangeProbe {

    private FileChangeProbe() {}

    public static void main(String[] args) throws Exception {
        Path file = Path.of(args[1]);
        Backend backend = args[0].equals("kernel") ? new TruncatingBackend(file, 40) : new CpuBackend(2);
        try (backend; Model model = Model.load(file, backend);
                Generator generator = new Generator(model, Tokenizer.from(VocabularyGguf.read(model.file())), 256)) {
            boolean[] announced = {false};
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (System.nanoTime() < deadline) {
                try {
                    generator.generate("Once upon a time", GenerationSettings.of(200, SamplerSettings.greedy()), piece -> {
                        if (!announced[0]) {
                            announced[0] = true;
                            System.out.println("running");
                            System.out.flush();
                        }
                    });
                } catch (IOException e) {
                    IOException again = null;
                    try {
                        generator.generate("Again", GenerationSettings.of(5, SamplerSettings.greedy()), piece -> { });
                    } catch (IOException e2) {
                        again = e2;
                    }
                    if (again == null || !again.getMessage().equals(e.getMessage())) {
                        System.err.println("the next pass did not fail the same way: " + again);
                        System.exit(3);
                    }
                    System.out.println("via=" + (e.getCause() instanceof NativeKernelException k && k.isFault() ? "fault" : "check"));
                    System.err.println("nibble: error: " + e.getMessage());
                    System.exit(1);
                }
            }
        }
        System.err.println("generation never failed");
        System.exit(2);
    }

    /** The CPU backend, truncating the model's file to a tenth just before its {@code at}-th matmul. */
    static final class TruncatingBackend extends HostBackend {

        private final CpuBackend cpu = new CpuBackend(2);
        private final Path file;
        private final int at;
        private int matmuls;

        TruncatingBackend(Path file, int at) {
            this.file = file;
            this.at = at;
        }

        @Override
        public void matmul(Matrix w, MemorySegment x, int tokens, MemorySegment out) {
            if (++matmuls == at) {
                try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                    ch.truncate(ch.size() / 10);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }
            cpu.matmul(w, x, tokens, out);
        }

        @Override
        public String description() {
            return cpu.description();
        }

        @Override
        public void embed(Matrix table, MemorySegment ids, int count, MemorySegment out) {
            cpu.embed(table, ids, count, out);
        }

        @Override
        public void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out) {
            cpu.rmsNorm(x, weight, tokens, dim, eps, out);
        }

        @Override
        public void rope(MemorySegment x, int tokens, int heads, int headDim, MemorySegment positions, float theta,
                         float freqScale, MemorySegment freqFactors) {
            cpu.rope(x, tokens, heads, headDim, positions, theta, freqScale, freqFactors);
        }

        @Override
        public void attention(MemorySegment q, int tokens, MemorySegment positions, MemorySegment starts, int heads,
                              int kvHeads, int headDim, MemorySegment keys, MemorySegment values, int span,
                              MemorySegment work, MemorySegment out) {
            cpu.attention(q, tokens, positions, starts, heads, kvHeads, headDim, keys, values, span, work, out);
        }

        @Override
        public void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out) {
            cpu.swiglu(gate, up, n, out);
        }

        @Override
        public void add(MemorySegment a, MemorySegment b, long n, MemorySegment out) {
            cpu.add(a, b, n, out);
        }

        @Override
        public void close() {
            cpu.close();
        }
    }
}
