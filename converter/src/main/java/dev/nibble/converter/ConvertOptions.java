package dev.nibble.converter;

import java.nio.file.Path;
import java.util.Objects;

/**
 * What to convert and how.
 *
 * @param name    GGUF {@code general.name}; defaults to the model folder's name
 * @param threads workers that quantize in parallel
 * @param force   replace an existing output file
 * @param allowExternalLinks read files of the model folder that are links to places outside it (refused by default:
 *                           they could carry a local file into the converted model)
 */
public record ConvertOptions(Path modelDir, Path output, Recipe recipe, String name, int threads, boolean force,
                             boolean allowExternalLinks, DiskSpace diskSpace, ConversionProgress progress) {

    public ConvertOptions {
        Objects.requireNonNull(modelDir, "modelDir");
        Objects.requireNonNull(output, "output");
        Objects.requireNonNull(recipe, "recipe");
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(diskSpace, "diskSpace");
        Objects.requireNonNull(progress, "progress");
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be at least 1, is " + threads);
        }
    }

    /**
     * Defaults: the folder's name, one worker per processor, no overwrite, no links out of the folder, the real disk,
     * no progress output.
     */
    public static ConvertOptions of(Path modelDir, Path output, Recipe recipe) {
        Path folder = modelDir.toAbsolutePath().normalize().getFileName();
        return new ConvertOptions(modelDir, output, recipe, folder == null ? "model" : folder.toString(),
                Runtime.getRuntime().availableProcessors(), false, false, DiskSpace.FILE_STORE, ConversionProgress.none());
    }

    public ConvertOptions withName(String newName) {
        return new ConvertOptions(modelDir, output, recipe, newName, threads, force, allowExternalLinks, diskSpace, progress);
    }

    public ConvertOptions withThreads(int newThreads) {
        return new ConvertOptions(modelDir, output, recipe, name, newThreads, force, allowExternalLinks, diskSpace, progress);
    }

    public ConvertOptions withForce(boolean newForce) {
        return new ConvertOptions(modelDir, output, recipe, name, threads, newForce, allowExternalLinks, diskSpace, progress);
    }

    public ConvertOptions withAllowExternalLinks(boolean allow) {
        return new ConvertOptions(modelDir, output, recipe, name, threads, force, allow, diskSpace, progress);
    }

    public ConvertOptions withDiskSpace(DiskSpace newDiskSpace) {
        return new ConvertOptions(modelDir, output, recipe, name, threads, force, allowExternalLinks, newDiskSpace, progress);
    }

    public ConvertOptions withProgress(ConversionProgress newProgress) {
        return new ConvertOptions(modelDir, output, recipe, name, threads, force, allowExternalLinks, diskSpace, newProgress);
    }
}
