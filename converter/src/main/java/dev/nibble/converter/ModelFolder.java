package dev.nibble.converter;

import dev.nibble.formats.checkpoint.Checkpoint;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/** The files a conversion reads from a Hugging Face model folder, all of which sit directly in the folder. */
final class ModelFolder {

    /** Every file the converter may read besides the weight shards an index names. */
    private static final List<String> KNOWN_FILES = List.of("config.json", "generation_config.json",
            "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
            "tokenizer.model", "tokenizer.json", "model.safetensors", "model.safetensors.index.json",
            "pytorch_model.bin", "pytorch_model.bin.index.json");

    private ModelFolder() {
    }

    /**
     * Refuses a file of the folder that is a link to somewhere outside it: its content would end up in the converted
     * model (a chat_template.jinja linked to /etc/passwd becomes the model's template), and a model is made to be
     * shared. Links into the Hugging Face cache's {@code blobs} folder, which every snapshot folder is made of, are
     * the model's own files. Links to folders are not followed by the converter, so they are left alone.
     */
    static void refuseExternalLinks(Path modelDir) throws IOException {
        Path root = modelDir.toRealPath();
        Path blobs = huggingFaceBlobs(root);
        try (Stream<Path> entries = Files.list(modelDir)) {
            for (Iterator<Path> it = entries.iterator(); it.hasNext(); ) {
                Path entry = it.next();
                if (!Files.isSymbolicLink(entry)) {
                    continue;
                }
                Path real;
                try {
                    real = entry.toRealPath();
                } catch (IOException dangling) {
                    continue; // nothing there to read; a needed file is reported missing when it is read
                }
                if (real.startsWith(root) || (blobs != null && real.startsWith(blobs)) || Files.isDirectory(real)) {
                    continue;
                }
                // Name the link and its target only: the target's content is not the model's and must not be shown.
                throw new IOException(entry + " is a link to " + real + ", outside the model folder, and would be copied"
                        + " into the model; copy the file into " + modelDir + ", or pass --allow-external-links if it"
                        + " belongs to the model");
            }
        }
    }

    /** The files of the folder a conversion reads that exist, before the checkpoint is opened. */
    static List<Path> knownInputs(Path modelDir) {
        List<Path> inputs = new ArrayList<>();
        for (String name : KNOWN_FILES) {
            Path file = modelDir.resolve(name);
            if (Files.exists(file)) {
                inputs.add(file);
            }
        }
        return inputs;
    }

    /** Every file a conversion reads: the known ones and every file of the checkpoint (shards included). */
    static List<Path> inputs(Path modelDir, Checkpoint checkpoint) {
        Set<Path> inputs = new LinkedHashSet<>(knownInputs(modelDir));
        inputs.addAll(checkpoint.files());
        return List.copyOf(inputs);
    }

    /** For {@code models--ORG--NAME/snapshots/REV}, a Hugging Face cache snapshot: {@code models--ORG--NAME/blobs}. */
    private static Path huggingFaceBlobs(Path realModelDir) {
        Path snapshots = realModelDir.getParent();
        Path repo = snapshots == null ? null : snapshots.getParent();
        if (repo == null || !snapshots.getFileName().toString().equals("snapshots")
                || repo.getFileName() == null || !repo.getFileName().toString().startsWith("models--")) {
            return null;
        }
        return repo.resolve("blobs");
    }
}
