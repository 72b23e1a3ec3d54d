package dev.nibble.converter;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalInt;

/** Reads the small JSON files of a Hugging Face model folder, turning every problem into a {@link FormatException}. */
final class JsonFiles {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    private JsonFiles() {
    }

    /** The parsed object in {@code file}; a missing file is a {@link NoSuchFileException}, bad JSON a FormatException. */
    static JsonNode readObject(Path file) throws IOException {
        JsonNode root;
        try {
            root = MAPPER.readTree(file.toFile());
        } catch (JsonProcessingException e) {
            long offset = e.getLocation() == null ? -1 : e.getLocation().getCharOffset();
            throw new FormatException(file, "JSON", offset, e.getOriginalMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new FormatException(file, "JSON", 0, "expected a JSON object");
        }
        return root;
    }

    /** Like {@link #readObject} but empty when the file does not exist. */
    static Optional<JsonNode> readOptionalObject(Path file) throws IOException {
        return Files.isRegularFile(file) ? Optional.of(readObject(file)) : Optional.empty();
    }

    static int requireInt(JsonNode node, String field, Path file) throws FormatException {
        return optionalInt(node, field, file).orElseThrow(() -> missing(file, field, "an integer"));
    }

    static OptionalInt optionalInt(JsonNode node, String field, Path file) throws FormatException {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            return OptionalInt.empty();
        }
        if (!v.canConvertToInt() || !v.isIntegralNumber()) {
            throw new FormatException(file, field, -1, "expected an integer, found " + v);
        }
        return OptionalInt.of(v.intValue());
    }

    static OptionalDouble optionalDouble(JsonNode node, String field, Path file) throws FormatException {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            return OptionalDouble.empty();
        }
        if (!v.isNumber()) {
            throw new FormatException(file, field, -1, "expected a number, found " + v);
        }
        return OptionalDouble.of(v.doubleValue());
    }

    static Optional<Boolean> optionalBoolean(JsonNode node, String field, Path file) throws FormatException {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            return Optional.empty();
        }
        if (!v.isBoolean()) {
            throw new FormatException(file, field, -1, "expected true or false, found " + v);
        }
        return Optional.of(v.booleanValue());
    }

    static Optional<String> optionalString(JsonNode node, String field, Path file) throws FormatException {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            return Optional.empty();
        }
        if (!v.isTextual()) {
            throw new FormatException(file, field, -1, "expected a string, found " + v);
        }
        return Optional.of(v.textValue());
    }

    static FormatException missing(Path file, String field, String what) {
        return new FormatException(file, field, -1, "missing; expected " + what);
    }
}
