package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.nibble.runtime.chat.ModelChatEngine;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A cache cut back and extended (a chat's next turn) gives what running the whole new sequence at once gives. */
class KvCacheTruncateTest {

    @TempDir
    Path dir;

    @Test
    void truncatedCacheContinuesAsIfTheTailWasNeverRun() throws IOException {
        Path file = RandomModel.write(dir.resolve("m.gguf"), 2, 5, t -> t);
        int[] first = RandomModel.tokens(40, 11);
        int[] second = RandomModel.tokens(50, 12);
        // The second sequence shares its first 23 tokens with the first, then goes its own way.
        System.arraycopy(first, 0, second, 0, 23);
        try (Backend b = new ReferenceBackend(); Model m = Model.load(file, b)) {
            float[] fresh;
            try (KvCache cache = m.newCache(64)) {
                fresh = m.forward(second, cache, false);
            }
            try (KvCache cache = m.newCache(64)) {
                ModelChatEngine engine = new ModelChatEngine(m, cache);
                assertEquals(64, engine.contextSize());
                engine.append(first);
                engine.truncate(23);
                float[] reused = engine.append(Arrays.copyOfRange(second, 23, second.length));
                assertArrayEquals(fresh, reused, 1e-4f);
                assertThrows(IllegalArgumentException.class, () -> engine.truncate(51));
            }
        }
    }
}
