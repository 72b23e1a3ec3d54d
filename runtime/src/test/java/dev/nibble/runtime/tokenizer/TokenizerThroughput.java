package dev.nibble.runtime.tokenizer;

import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.formats.vocab.Vocabulary;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Measures encoding speed (not a test): {@code TokenizerThroughput TOKENIZER_DIR TEXT_FILE MIN_BYTES} encodes the
 * file once, then the file repeated up to MIN_BYTES, five times each after a warm-up, every run with a fresh
 * tokenizer (so its word cache starts empty), and prints tokens per second.
 */
public final class TokenizerThroughput {
    private TokenizerThroughput() {
    }

    public static void main(String[] args) throws Exception {
        Vocabulary vocab = HuggingFaceVocabulary.load(Path.of(args[0]));
        String once = Files.readString(Path.of(args[1]));
        StringBuilder sb = new StringBuilder();
        while (sb.length() < Integer.parseInt(args[2])) {
            sb.append(once);
        }
        Tokenizer.from(vocab).encode(sb.toString(), false, false);
        for (String text : new String[] {once, sb.toString()}) {
            int bytes = text.getBytes(StandardCharsets.UTF_8).length;
            for (int run = 0; run < 5; run++) {
                Tokenizer tok = Tokenizer.from(vocab);
                long t0 = System.nanoTime();
                int n = tok.encode(text, false, false).length;
                double s = (System.nanoTime() - t0) / 1e9;
                System.out.printf("%s: %,d bytes -> %,d tokens in %.3f s = %,.0f tokens/s%n", args[0], bytes, n, s, n / s);
            }
        }
    }
}
