package dev.nibble.testing;

import java.nio.file.Files;
import java.nio.file.Path;

/** Finds the repository's {@code test-data} folder for every module's tests. */
public final class TestData {

    private TestData() {}

    /** The {@code nibble.testData} property set by the build (surefire), else the nearest {@code test-data/tiny-llama} above the working directory. */
    public static Path root() {
        String property = System.getProperty("nibble.testData");
        if (property != null && Files.isDirectory(Path.of(property))) {
            return Path.of(property);
        }
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("test-data/tiny-llama"))) {
                return p.resolve("test-data");
            }
        }
        throw new IllegalStateException("test-data/ not found; run the tests from the repository or set -Dnibble.testData");
    }

    public static Path resolve(String relative) {
        return root().resolve(relative);
    }

    public static Path tinySafetensors() {
        return resolve("tiny-llama/safetensors");
    }

    public static Path tinyBin() {
        return resolve("tiny-llama/bin");
    }
}
