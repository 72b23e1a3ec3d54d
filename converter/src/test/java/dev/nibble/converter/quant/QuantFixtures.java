package dev.nibble.converter.quant;

import dev.nibble.testing.TestData;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/** Reads the ggml reference outputs under test-data/quant (see its README). */
final class QuantFixtures {

    private QuantFixtures() {
    }

    static Path dir() {
        return TestData.resolve("quant");
    }

    /** The root of test-data/. */
    static Path root() {
        return dir().getParent();
    }

    static byte[] bytes(String name) throws IOException {
        return Files.readAllBytes(dir().resolve(name));
    }

    /** Element {@code from} up to {@code to} of {@code input.f32}; see the README for what each range is. */
    static float[] input(int from, int to) throws IOException {
        return java.util.Arrays.copyOfRange(floats("input.f32"), from, to);
    }

    static float[] floats(String name) throws IOException {
        byte[] raw = bytes(name);
        float[] out = new float[raw.length / 4];
        ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }
}
