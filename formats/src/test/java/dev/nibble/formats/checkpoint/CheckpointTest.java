package dev.nibble.formats.checkpoint;

import static dev.nibble.formats.checkpoint.Fixtures.assertSameTensors;
import static dev.nibble.formats.checkpoint.Fixtures.byName;
import static dev.nibble.formats.checkpoint.Fixtures.tinyBin;
import static dev.nibble.formats.checkpoint.Fixtures.tinySafetensors;
import static dev.nibble.formats.checkpoint.Fixtures.writeSafetensors;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.formats.FormatException;
import dev.nibble.formats.safetensors.SafetensorsFile;
import dev.nibble.formats.torch.TorchZipWriter;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {

    @TempDir
    Path dir;

    /** Splits {@code tensors} into {@code n} consecutive runs of nearly equal length. */
    private static List<List<CheckpointTensor>> split(List<CheckpointTensor> tensors, int n) {
        List<List<CheckpointTensor>> parts = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            parts.add(tensors.subList(i * tensors.size() / n, (i + 1) * tensors.size() / n));
        }
        return parts;
    }

    private static void writeIndex(Path index, List<String> shardNames, List<List<CheckpointTensor>> shards) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode root = json.createObjectNode();
        root.putObject("metadata").put("total_size", 0);
        ObjectNode map = root.putObject("weight_map");
        for (int i = 0; i < shards.size(); i++) {
            for (CheckpointTensor t : shards.get(i)) {
                map.put(t.name(), shardNames.get(i));
            }
        }
        json.writeValue(index.toFile(), root);
    }

    private static List<String> shardNames(String stem, String ext, int n) {
        List<String> names = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            names.add(String.format("%s-%05d-of-%05d.%s", stem, i, n, ext));
        }
        return names;
    }

    /** Writes the real model as three safetensors shards plus index into {@code dir} and returns the index. */
    private Path shardSafetensors(List<CheckpointTensor> tensors) throws IOException {
        List<List<CheckpointTensor>> parts = split(tensors, 3);
        List<String> names = shardNames("model", "safetensors", 3);
        for (int i = 0; i < 3; i++) {
            writeSafetensors(dir.resolve(names.get(i)), parts.get(i));
        }
        Path index = dir.resolve(Checkpoint.SAFETENSORS_INDEX);
        writeIndex(index, names, parts);
        return index;
    }

    @Test
    void folderOfSafetensorsOpensTheModelFile() throws IOException {
        try (Checkpoint c = Checkpoint.open(tinySafetensors().getParent()); SafetensorsFile f = SafetensorsFile.open(tinySafetensors())) {
            assertEquals(List.of(tinySafetensors()), c.files());
            assertSameTensors(f.tensors(), c.tensors());
            assertEquals(f.tensors().get(5).name(), c.tensor(f.tensors().get(5).name()).orElseThrow().name());
            assertTrue(c.tensor("no.such.tensor").isEmpty());
        }
    }

    @Test
    void folderOfPytorchBinOpensTheZipCheckpoint() throws IOException {
        try (Checkpoint bin = Checkpoint.open(tinyBin().getParent()); Checkpoint st = Checkpoint.open(tinySafetensors())) {
            assertEquals(List.of(tinyBin()), bin.files());
            assertSameTensors(byName(st.tensors()), byName(bin.tensors()));
        }
    }

    @Test
    void folderWithBothLayoutsPrefersSafetensors() throws IOException {
        Files.copy(tinySafetensors(), dir.resolve(Checkpoint.SAFETENSORS));
        Files.writeString(dir.resolve(Checkpoint.TORCH), "not a zip: opening it would fail");
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertEquals(List.of(dir.resolve(Checkpoint.SAFETENSORS)), c.files());
        }
    }

    @Test
    void folderWithoutCheckpointIsRejectedListingWhatWasLookedFor() {
        IOException e = assertThrows(IOException.class, () -> Checkpoint.open(dir));
        assertTrue(e.getMessage().contains("no checkpoint found") && e.getMessage().contains(Checkpoint.TORCH_INDEX), e.getMessage());
    }

    @Test
    void threeSafetensorsShardsReadAsTheOriginal() throws IOException {
        try (SafetensorsFile original = SafetensorsFile.open(tinySafetensors())) {
            Path index = shardSafetensors(original.tensors());
            try (Checkpoint c = Checkpoint.open(dir)) {
                assertEquals(4, c.files().size());
                assertEquals(index.toAbsolutePath(), c.files().getFirst().toAbsolutePath());
                assertSameTensors(original.tensors(), c.tensors());
                assertEquals("model-00003-of-00003.safetensors", c.tensors().getLast().file().getFileName().toString());
            }
            try (Checkpoint viaIndex = Checkpoint.open(index)) {
                assertSameTensors(original.tensors(), viaIndex.tensors());
            }
        }
    }

    @Test
    void shardedPytorchBinReadsAsTheRealFile() throws IOException {
        try (Checkpoint real = Checkpoint.open(tinyBin())) {
            List<List<CheckpointTensor>> parts = split(real.tensors(), 3);
            List<String> names = shardNames("pytorch_model", "bin", 3);
            for (int i = 0; i < 3; i++) {
                TorchZipWriter.write(dir.resolve(names.get(i)), TorchZipWriter.views(parts.get(i)), false);
            }
            writeIndex(dir.resolve(Checkpoint.TORCH_INDEX), names, parts);
            try (Checkpoint sharded = Checkpoint.open(dir)) {
                assertEquals(4, sharded.files().size());
                assertSameTensors(real.tensors(), sharded.tensors());
            }
        }
    }

    @Test
    void indexNamingAMissingShardIsRejectedNamingBoth() throws IOException {
        try (SafetensorsFile original = SafetensorsFile.open(tinySafetensors())) {
            shardSafetensors(original.tensors());
        }
        Files.delete(dir.resolve("model-00002-of-00003.safetensors"));
        FormatException e = assertThrows(FormatException.class, () -> Checkpoint.open(dir));
        assertTrue(e.getMessage().contains(Checkpoint.SAFETENSORS_INDEX) && e.getMessage().contains("'model-00002-of-00003.safetensors'")
                && e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void tensorListedInTheIndexButAbsentFromItsShardIsRejected() throws IOException {
        List<CheckpointTensor> tensors = Fixtures.randomTensors(new Random(21), 6);
        writeSafetensors(dir.resolve("a.safetensors"), tensors.subList(0, 3));
        writeSafetensors(dir.resolve("b.safetensors"), tensors.subList(3, 5));
        writeIndex(dir.resolve(Checkpoint.SAFETENSORS_INDEX), List.of("a.safetensors", "b.safetensors"),
                List.of(tensors.subList(0, 3), tensors.subList(3, 6)));
        FormatException e = assertThrows(FormatException.class, () -> Checkpoint.open(dir));
        assertTrue(e.getMessage().contains("weight_map 'layers.5.weight'") && e.getMessage().contains("does not contain it"), e.getMessage());
    }

    @Test
    void tensorPresentInTwoShardsIsRejected() throws IOException {
        List<CheckpointTensor> tensors = Fixtures.randomTensors(new Random(22), 4);
        writeSafetensors(dir.resolve("a.safetensors"), tensors.subList(0, 3));
        writeSafetensors(dir.resolve("b.safetensors"), tensors.subList(2, 4));
        writeIndex(dir.resolve(Checkpoint.SAFETENSORS_INDEX), List.of("a.safetensors", "b.safetensors"),
                List.of(tensors.subList(0, 2), tensors.subList(2, 4)));
        FormatException e = assertThrows(FormatException.class, () -> Checkpoint.open(dir));
        assertTrue(e.getMessage().contains("tensor 'layers.2.weight'") && e.getMessage().contains("also in shard a.safetensors"), e.getMessage());
    }

    @Test
    void indexThatClimbsOutOfItsFolderIsRejected() throws IOException {
        Files.writeString(dir.resolve(Checkpoint.SAFETENSORS_INDEX), "{\"weight_map\":{\"w\":\"../model.safetensors\"}}");
        FormatException e = assertThrows(FormatException.class, () -> Checkpoint.open(dir));
        assertTrue(e.getMessage().contains("must be a file name next to the index"), e.getMessage());
    }

    @Test
    void indexThatIsNotJsonIsRejected() throws IOException {
        Files.writeString(dir.resolve(Checkpoint.TORCH_INDEX), "{\"weight_map\": ");
        FormatException e = assertThrows(FormatException.class, () -> Checkpoint.open(dir));
        assertTrue(e.getMessage().contains("not valid JSON"), e.getMessage());
    }

    @Test
    void closingReleasesEveryShard() throws IOException {
        try (SafetensorsFile original = SafetensorsFile.open(tinySafetensors())) {
            shardSafetensors(original.tensors());
        }
        Checkpoint c = Checkpoint.open(dir);
        List<CheckpointTensor> tensors = c.tensors();
        c.close();
        for (CheckpointTensor t : List.of(tensors.getFirst(), tensors.getLast())) {
            assertThrows(IllegalStateException.class, () -> t.data().get(ValueLayout.JAVA_BYTE, 0));
        }
    }
}
