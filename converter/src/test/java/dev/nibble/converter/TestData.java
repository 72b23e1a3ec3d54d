package dev.nibble.converter;

import java.nio.file.Files;
import java.nio.file.Path;

/** Locates the repository's test-data folder: the {@code nibble.testData} property, else the nearest ancestor holding one. */
final class TestData {

    private TestData() {
    }

    static Path root() {
        String prop = System.getProperty("nibble.testData");
        if (prop != null && Files.isDirectory(Path.of(prop))) {
            return Path.of(prop);
        }
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("test-data"))) {
                return p.resolve("test-data");
            }
        }
        throw new IllegalStateException("test-data not found; set -Dnibble.testData");
    }

    static Path tinySafetensors() {
        return root().resolve("tiny-llama/safetensors");
    }

    static Path tinyBin() {
        return root().resolve("tiny-llama/bin");
    }
}
