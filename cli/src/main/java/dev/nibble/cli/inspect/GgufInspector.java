package dev.nibble.cli.inspect;

import dev.nibble.formats.gguf.GgufArray;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufTensor;
import dev.nibble.formats.gguf.GgufValue;
import dev.nibble.formats.gguf.GgufValueType;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Builds an {@link Inspection} from a GGUF file's header; tensor data is never read. */
final class GgufInspector {

    private GgufInspector() {}

    static Inspection inspect(Path path) throws IOException {
        try (GgufFile file = GgufFile.open(path)) {
            Map<String, Inspection.MetadataEntry> metadata = new LinkedHashMap<>();
            for (String key : file.metadata().keys()) {
                GgufValue v = file.metadata().get(key).orElseThrow();
                metadata.put(key, new Inspection.MetadataEntry(typeName(v), plain(v.type(), v.value())));
            }
            List<Inspection.TensorRow> tensors = new ArrayList<>();
            for (GgufTensor t : file.tensors()) {
                tensors.add(new Inspection.TensorRow(t.name(), t.type().name(), t.dims(),
                        t.info().elementCount(), t.info().byteSize()));
            }
            return new Inspection("GGUF v" + file.version() + ", alignment " + file.alignment(),
                    List.of(path.toString()), "ggml order, fastest-varying dimension first", metadata, tensors);
        }
    }

    private static String typeName(GgufValue v) {
        return v.value() instanceof GgufArray a ? "ARRAY[" + arrayTypeName(a) + "]" : v.type().name();
    }

    private static String arrayTypeName(GgufArray a) {
        if (a.elementType() == GgufValueType.ARRAY && !a.elements().isEmpty()) {
            return "ARRAY[" + arrayTypeName((GgufArray) a.elements().getFirst()) + "]";
        }
        return a.elementType().name();
    }

    /** GGUF values as plain JSON-friendly Java values; UINT64 above Long.MAX_VALUE is shown unsigned. */
    private static Object plain(GgufValueType type, Object value) {
        if (value instanceof GgufArray a) {
            List<Object> out = new ArrayList<>(a.size());
            for (Object e : a.elements()) {
                out.add(plain(a.elementType(), e));
            }
            return out;
        }
        if (type == GgufValueType.UINT64 && (Long) value < 0) {
            return Long.toUnsignedString((Long) value);
        }
        return value;
    }
}
