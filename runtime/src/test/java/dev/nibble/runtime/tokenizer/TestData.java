package dev.nibble.runtime.tokenizer;

import java.nio.file.Files;
import java.nio.file.Path;

/** Finds the repository's test-data folder: the nibble.testData property, else the nearest test-data above the working directory. */
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
        throw new IllegalStateException("test-data not found; run from the repository or set -Dnibble.testData");
    }

    static Path resolve(String relative) {
        return root().resolve(relative);
    }
}
