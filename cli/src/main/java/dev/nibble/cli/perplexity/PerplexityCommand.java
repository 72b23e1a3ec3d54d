package dev.nibble.cli.perplexity;

import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.cli.DeviceOptions;
import dev.nibble.cli.InputFiles;
import dev.nibble.cli.LlamaCppFlags;
import dev.nibble.cli.ModelOption;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Perplexity;
import dev.nibble.runtime.Placement;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code nibble perplexity}: how well a model predicts a text file. */
@Command(name = "perplexity", mixinStandardHelpOptions = true,
        description = {"Perplexity of the model on a UTF-8 text file. The text is tokenized as one, without special "
                + "tokens, and cut into non-overlapping windows of ctx-1 tokens, each run after BOS from an empty "
                + "context; every token after BOS is scored."})
public final class PerplexityCommand implements Callable<Integer> {

    @Mixin
    ModelOption model;

    @Option(names = {"-f", "--file"}, required = true, paramLabel = "TEXT", description = "UTF-8 text file (at most 64 MiB).")
    Path text;

    @Option(names = {"-c", "--ctx-size", "--ctx"}, defaultValue = "512", paramLabel = "N",
            description = "Window size in tokens, BOS included (default ${DEFAULT-VALUE}, at most the model's).")
    int ctx;

    @Mixin
    DeviceOptions device;

    @Mixin
    LlamaCppFlags llamaCpp;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Path gguf = model.gguf();
        // a regular file (not a FIFO or /dev/zero), strictly UTF-8, at most 64 MiB: read before the model loads
        String content = InputFiles.readUtf8(text, "-f", "the UTF-8 text to score", InputFiles.TEXT_LIMIT);
        try (Placement placement = device.open(err);
             Model m = Model.load(gguf, placement, ctx, DeviceOptions.loadProgress(err))) {
            DeviceOptions.reportPlacement(m, err);
            if (ctx < 2 || ctx > m.config().contextLength()) {
                throw new IllegalArgumentException("--ctx must be between 2 and the model's context length "
                        + m.config().contextLength() + ", is " + ctx);
            }
            Vocabulary vocab = VocabularyGguf.read(m.file());
            m.checkVocabulary(vocab.size());
            if (vocab.bosId() < 0) {
                throw new IllegalArgumentException(gguf + ": the vocabulary has no BOS token to start each window");
            }
            int[] tokens = Tokenizer.from(vocab).encode(content, false, false);
            int windows = (tokens.length + ctx - 2) / (ctx - 1);
            err.println("nibble: " + tokens.length + " tokens in " + windows + " windows of " + ctx + "; "
                    + m.description());
            // A progress counter only on a terminal; logs and pipes get the start and result lines.
            boolean terminal = System.console() != null && System.console().isTerminal();
            long t0 = System.nanoTime();
            Perplexity.Result r = Perplexity.compute(m, tokens, vocab.bosId(), ctx, done -> {
                if (terminal && (done % 10 == 0 || done == windows)) {
                    err.print("\rnibble: window " + done + "/" + windows);
                    err.flush();
                }
            });
            double seconds = (System.nanoTime() - t0) / 1e9;
            if (terminal) {
                err.println();
            }
            out.println(String.format(Locale.ROOT, "perplexity %.4f over %d tokens (ctx %d, %d windows, mean NLL %.5f nats, %.1f s)",
                    r.perplexity(), r.scoredTokens(), ctx, r.windows(), r.totalNll() / r.scoredTokens(), seconds));
            out.flush();
        }
        return 0;
    }
}
