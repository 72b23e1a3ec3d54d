package dev.nibble.cli.inspect;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.FormatException;
import dev.nibble.formats.checkpoint.Checkpoint;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Builds an {@link Inspection} from a Hugging Face checkpoint (safetensors or PyTorch zip, sharded or not). */
final class CheckpointInspector {

    private CheckpointInspector() {}

    static Inspection inspect(Path path) throws IOException {
        try (Checkpoint checkpoint = Checkpoint.open(path)) {
            List<Inspection.TensorRow> tensors = new ArrayList<>();
            for (CheckpointTensor t : checkpoint.tensors()) {
                tensors.add(new Inspection.TensorRow(t.name(), t.dtype().name(), t.shape(), t.elementCount(), t.data().byteSize()));
            }
            List<String> files = checkpoint.files().stream().map(Path::toString).toList();
            String format = files.stream().allMatch(f -> f.endsWith(".safetensors")) ? "safetensors" : "PyTorch zip";
            return new Inspection(format + (files.size() > 1 ? ", " + files.size() + " shards" : ""), files,
                    "PyTorch order, slowest-varying dimension first", configOf(path), tensors);
        }
    }

    /** The top-level entries of the folder's config.json, when there is one, so the model's shape shows beside its tensors. */
    private static Map<String, Inspection.MetadataEntry> configOf(Path path) throws IOException {
        Path config = (Files.isDirectory(path) ? path : path.toAbsolutePath().getParent()).resolve("config.json");
        Map<String, Inspection.MetadataEntry> metadata = new LinkedHashMap<>();
        if (!Files.isRegularFile(config)) {
            return metadata;
        }
        ObjectMapper mapper = new ObjectMapper();
        JsonNode root;
        try {
            root = mapper.readTree(config.toFile());
        } catch (JsonProcessingException e) {
            throw new FormatException(config, "config.json", -1, "not valid JSON: " + e.getOriginalMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new FormatException(config, "config.json", -1, "expected a JSON object");
        }
        for (Map.Entry<String, JsonNode> e : root.properties()) {
            JsonNode v = e.getValue();
            metadata.put("config." + e.getKey(), new Inspection.MetadataEntry(v.getNodeType().name(), mapper.treeToValue(v, Object.class)));
        }
        return metadata;
    }
}
