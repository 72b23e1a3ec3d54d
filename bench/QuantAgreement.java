import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.CpuBackend;
import dev.nibble.runtime.KvCache;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/**
 * Perplexity (nibble's procedure) and top-1 agreement with a reference model, for several conversions of one model.
 * Usage: java --enable-native-access=ALL-UNNAMED -cp cli/target/nibble.jar bench/QuantAgreement.java TEXT CTX REF.gguf OTHER.gguf...
 * Top-1 agreement: the share of scored positions where the model's most likely next token is the reference's.
 */
public class QuantAgreement {
    public static void main(String[] args) throws Exception {
        String text = Files.readString(Path.of(args[0]));
        int ctx = Integer.parseInt(args[1]);
        int[] reference = null;
        try (CpuBackend backend = new CpuBackend(0)) {
            for (int f = 2; f < args.length; f++) {
                try (Model m = Model.load(Path.of(args[f]), backend); KvCache cache = m.newCache(ctx)) {
                    Vocabulary vocab = VocabularyGguf.read(m.file());
                    int[] tokens = Tokenizer.from(vocab).encode(text, false, false);
                    int vocabSize = m.config().vocabSize();
                    int[] top1 = new int[tokens.length];
                    double nll = 0;
                    int scored = 0;
                    long t0 = System.nanoTime();
                    for (int from = 0; from < tokens.length; from += ctx - 1) {
                        int n = Math.min(ctx - 1, tokens.length - from);
                        int[] window = new int[n];
                        window[0] = vocab.bosId();
                        System.arraycopy(tokens, from, window, 1, n - 1);
                        cache.clear();
                        for (int s = 0; s < n; s += m.batch()) {
                            int len = Math.min(m.batch(), n - s);
                            float[] logits = m.forward(Arrays.copyOfRange(window, s, s + len), cache, true);
                            for (int j = 0; j < len; j++) {
                                int target = tokens[from + s + j];
                                int off = j * vocabSize, best = 0;
                                double max = Double.NEGATIVE_INFINITY, sum = 0;
                                for (int i = 0; i < vocabSize; i++) {
                                    if (logits[off + i] > max) {
                                        max = logits[off + i];
                                        best = i;
                                    }
                                }
                                for (int i = 0; i < vocabSize; i++) {
                                    sum += Math.exp(logits[off + i] - max);
                                }
                                nll -= logits[off + target] - max - Math.log(sum);
                                top1[from + s + j] = best;
                                scored++;
                            }
                        }
                    }
                    String agreement = "";
                    if (reference == null) {
                        reference = top1;
                    } else {
                        int same = 0;
                        for (int i = 0; i < top1.length; i++) {
                            same += top1[i] == reference[i] ? 1 : 0;
                        }
                        agreement = String.format(Locale.ROOT, "%.2f%%", 100.0 * same / top1.length);
                    }
                    System.out.println(String.format(Locale.ROOT, "| %s | %.3f | %s | %d | %.0f s |", Path.of(args[f]).getFileName(),
                            Math.exp(nll / scored), agreement.isEmpty() ? "(reference)" : agreement, scored,
                            (System.nanoTime() - t0) / 1e9));
                }
            }
        }
    }
}
