package dev.nibble.formats.checkpoint;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.safetensors.SafetensorsFile;
import dev.nibble.formats.torch.TorchZipCheckpoint;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/** A Hugging Face model's weights, whatever their layout: one or many safetensors or PyTorch zip files. */
public final class Checkpoint implements AutoCloseable {

    static final String SAFETENSORS = "model.safetensors";
    static final String SAFETENSORS_INDEX = "model.safetensors.index.json";
    static final String TORCH = "pytorch_model.bin";
    static final String TORCH_INDEX = "pytorch_model.bin.index.json";

    private final List<Path> files;
    private final List<Runnable> closers;
    private final List<CheckpointTensor> tensors;
    private final Map<String, CheckpointTensor> byName;

    private Checkpoint(List<Path> files, List<Runnable> closers, List<CheckpointTensor> tensors) {
        this.files = List.copyOf(files);
        this.closers = List.copyOf(closers);
        this.tensors = Collections.unmodifiableList(tensors);
        this.byName = new HashMap<>();
        for (CheckpointTensor t : tensors) {
            byName.put(t.name(), t);
        }
    }

    /**
     * Opens a model folder (preferring safetensors over PyTorch files, a single file over an index, as transformers
     * does) or one checkpoint file: {@code *.safetensors}, a PyTorch zip such as {@code pytorch_model.bin}, or a
     * {@code *.index.json} shard index.
     */
    public static Checkpoint open(Path dirOrFile) throws IOException {
        if (Files.isDirectory(dirOrFile)) {
            for (String name : List.of(SAFETENSORS, SAFETENSORS_INDEX, TORCH, TORCH_INDEX)) {
                Path candidate = dirOrFile.resolve(name);
                if (Files.isRegularFile(candidate)) {
                    return openFile(candidate);
                }
            }
            throw new IOException(dirOrFile + ": no checkpoint found; expected one of " + SAFETENSORS + ", " + SAFETENSORS_INDEX
                    + ", " + TORCH + " or " + TORCH_INDEX);
        }
        if (!Files.isRegularFile(dirOrFile)) {
            throw new IOException(dirOrFile + ": no such file or folder");
        }
        return openFile(dirOrFile);
    }

    private static Checkpoint openFile(Path file) throws IOException {
        if (file.getFileName().toString().endsWith(".index.json")) {
            return openSharded(ShardIndex.read(file));
        }
        Shard shard = openShard(file);
        return new Checkpoint(List.of(file), List.of(shard.closer), new ArrayList<>(shard.tensors));
    }

    private record Shard(Runnable closer, List<CheckpointTensor> tensors) {}

    private static Shard openShard(Path file) throws IOException {
        if (file.getFileName().toString().endsWith(".safetensors")) {
            SafetensorsFile f = SafetensorsFile.open(file);
            return new Shard(f::close, f.tensors());
        }
        TorchZipCheckpoint f = TorchZipCheckpoint.open(file);
        return new Shard(f::close, f.tensors());
    }

    private static Checkpoint openSharded(ShardIndex index) throws IOException {
        List<Runnable> closers = new ArrayList<>();
        try {
            Map<String, CheckpointTensor> found = new LinkedHashMap<>();
            for (Path file : index.shards()) {
                Shard shard = openShard(file);
                closers.add(shard.closer);
                for (CheckpointTensor t : shard.tensors) {
                    CheckpointTensor earlier = found.putIfAbsent(t.name(), t);
                    if (earlier != null) {
                        throw new FormatException(file, "tensor '" + t.name() + "'", -1, "is also in shard " + earlier.file().getFileName()
                                + "; each tensor must be in exactly one shard");
                    }
                }
            }
            for (CheckpointTensor t : found.values()) {
                Path listed = index.weightMap().get(t.name());
                if (!t.file().equals(listed)) {
                    throw new FormatException(index.file(), "weight_map '" + t.name() + "'", -1, "places the tensor in "
                            + (listed == null ? "no shard" : "shard " + listed.getFileName()) + " but it is in " + t.file().getFileName());
                }
            }
            for (Map.Entry<String, Path> e : index.weightMap().entrySet()) {
                if (!found.containsKey(e.getKey())) {
                    throw new FormatException(index.file(), "weight_map '" + e.getKey() + "'", -1, "places the tensor in shard "
                            + e.getValue().getFileName() + ", which does not contain it");
                }
            }
            List<Path> files = new ArrayList<>();
            files.add(index.file());
            files.addAll(index.shards());
            return new Checkpoint(files, closers, new ArrayList<>(found.values()));
        } catch (IOException | RuntimeException e) {
            closeAll(closers);
            throw e;
        }
    }

    /** Every tensor: shard by shard in index order, each shard's tensors in file order. */
    public List<CheckpointTensor> tensors() {
        return tensors;
    }

    public Optional<CheckpointTensor> tensor(String name) {
        return Optional.ofNullable(byName.get(name));
    }

    /** The files read: the index first when there is one, then the weight files. */
    public List<Path> files() {
        return files;
    }

    /** Unmaps every file; tensors from this checkpoint must not be used afterwards. */
    @Override
    public void close() {
        closeAll(closers);
    }

    private static void closeAll(List<Runnable> closers) {
        for (Runnable closer : closers) {
            closer.run();
        }
    }
}
