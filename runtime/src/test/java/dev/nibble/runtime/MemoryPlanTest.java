package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A model that does not fit in a backend's memory is refused before loading, with what each part needs. */
class MemoryPlanTest {

    @TempDir
    Path dir;

    @Test
    void aModelThatDoesNotFitIsRefusedWithEveryPartNamedBeforeAnyWeightIsPlaced() throws IOException {
        Path file = RandomModel.write(dir.resolve("m.gguf"), 2, 1, t -> t);
        SmallDevice device = new SmallDevice(50_000);
        InsufficientMemoryException e = assertThrows(InsufficientMemoryException.class,
                () -> Model.load(file, device, 128, LoadProgress.NONE));
        String m = e.getMessage();
        assertTrue(m.startsWith("not enough memory on small device: the model needs "), m);
        // 2 layers × 7 matrices + embedding + output, and 2 × 2 norms + the output norm, at 1,000 bytes each: 21,000
        assertTrue(m.contains("weights 21 KiB") && m.contains("KV cache") && m.contains("for 128 tokens")
                && m.contains("workspace") && m.contains("is free; use a smaller --ctx"), m);
        assertEquals(0, device.placed, "nothing was copied");
    }

    @Test
    void theSameModelLoadsWhenItFitsWithTheWholeTrainedContext() throws IOException {
        Path file = RandomModel.write(dir.resolve("m.gguf"), 2, 1, t -> t);
        SmallDevice device = new SmallDevice(1L << 30);
        try (Model m = Model.load(file, device, 0, LoadProgress.NONE)) {
            assertEquals(16, device.placed, "every matrix is placed");
            assertEquals(RandomModel.CONTEXT, m.defaultContext(0), "a GiB holds the whole trained context");
        }
    }
}
