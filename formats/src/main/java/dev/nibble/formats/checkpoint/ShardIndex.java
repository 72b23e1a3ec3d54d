package dev.nibble.formats.checkpoint;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A Hugging Face shard index ({@code model.safetensors.index.json}, {@code pytorch_model.bin.index.json}): which
 * file holds each tensor.
 *
 * @param file      the index itself
 * @param weightMap tensor name to shard file (resolved next to the index), in index order
 * @param shards    the distinct shard files, in order of first mention
 */
public record ShardIndex(Path file, Map<String, Path> weightMap, List<Path> shards) {

    /** Index files list tensor names and file names only; a few MB covers models of thousands of tensors. */
    static final long MAX_INDEX_BYTES = 64L << 20;

    private static final JsonMapper JSON = JsonMapper.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

    /** Reads {@code file} and checks that every shard it names exists next to it. */
    public static ShardIndex read(Path file) throws IOException {
        long size = Files.size(file);
        if (size > MAX_INDEX_BYTES) {
            throw new FormatException(file, "index", -1, "is " + size + " bytes, too large for a shard index");
        }
        JsonNode root;
        try {
            root = JSON.readTree(Files.readAllBytes(file));
        } catch (JsonProcessingException e) {
            long at = e.getLocation() == null ? -1 : e.getLocation().getByteOffset();
            throw new FormatException(file, "index", at, "is not valid JSON: " + e.getOriginalMessage(), e);
        }
        JsonNode map = root == null ? null : root.get("weight_map");
        if (map == null || !map.isObject() || map.isEmpty()) {
            throw new FormatException(file, "weight_map", -1, "is missing or empty; a shard index maps tensor names to files");
        }
        Path dir = file.toAbsolutePath().getParent();
        Map<String, Path> weightMap = new LinkedHashMap<>();
        Set<Path> shards = new LinkedHashSet<>();
        for (Map.Entry<String, JsonNode> e : map.properties()) {
            JsonNode value = e.getValue();
            // Shards sit next to the index; a name that climbs out of the folder is not one.
            if (!value.isTextual() || value.textValue().isEmpty() || value.textValue().contains("/") || value.textValue().contains("\\")
                    || value.textValue().equals("..") || value.textValue().equals(".")) {
                throw new FormatException(file, "weight_map '" + e.getKey() + "'", -1, "must be a file name next to the index, not " + value);
            }
            Path shard = dir.resolve(value.textValue());
            if (!shards.contains(shard)) {
                if (!Files.isRegularFile(shard)) {
                    throw new FormatException(file, "weight_map '" + e.getKey() + "'", -1, "names shard '" + value.textValue()
                            + "', which does not exist in " + dir);
                }
                shards.add(shard);
            }
            weightMap.put(e.getKey(), shard);
        }
        return new ShardIndex(file, Collections.unmodifiableMap(weightMap), List.copyOf(shards));
    }
}
