package dev.nibble.converter;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/** The tensors a Llama checkpoint must hold for its config, and the check that a checkpoint holds exactly those. */
public final class LlamaLayout {

    /**
     * One expected tensor.
     *
     * @param shape       Hugging Face (PyTorch) order, slowest first
     * @param permutation the RoPE row order to apply, or null
     */
    public record Expected(String hfName, String ggufName, long[] shape, RopePermutation permutation) {
    }

    /** An expected tensor paired with the checkpoint tensor that supplies it. */
    public record Matched(Expected expected, CheckpointTensor source) {
    }

    private LlamaLayout() {
    }

    /** Every tensor the model needs, in GGUF file order: embeddings, the layers, final norm, output. */
    public static List<Expected> expected(HfModelConfig c) {
        long hidden = c.hiddenSize();
        long qRows = (long) c.headCount() * c.headDim();
        long kvRows = (long) c.kvHeadCount() * c.headDim();
        long ff = c.intermediateSize();
        List<Expected> out = new ArrayList<>();
        out.add(new Expected(TensorNames.HF_TOKEN_EMBEDDING, TensorNames.TOKEN_EMBEDDING, new long[] {c.vocabSize(), hidden}, null));
        for (int i = 0; i < c.layerCount(); i++) {
            String hf = "model.layers." + i + ".";
            String gg = "blk." + i + ".";
            long[][] shapes = {
                {hidden}, {qRows, hidden}, {kvRows, hidden}, {kvRows, hidden}, {hidden, qRows},
                {hidden}, {ff, hidden}, {ff, hidden}, {hidden, ff},
            };
            for (int t = 0; t < TensorNames.LAYER_TENSORS.length; t++) {
                String[] names = TensorNames.LAYER_TENSORS[t];
                RopePermutation perm = switch (names[1]) {
                    case "attn_q.weight" -> new RopePermutation(c.headCount(), c.headDim());
                    case "attn_k.weight" -> new RopePermutation(c.kvHeadCount(), c.headDim());
                    default -> null;
                };
                out.add(new Expected(hf + names[0], gg + names[1], shapes[t], perm));
            }
        }
        out.add(new Expected(TensorNames.HF_OUTPUT_NORM, TensorNames.OUTPUT_NORM, new long[] {hidden}, null));
        if (!c.tiedEmbeddings()) {
            out.add(new Expected(TensorNames.HF_OUTPUT, TensorNames.OUTPUT, new long[] {c.vocabSize(), hidden}, null));
        }
        return out;
    }

    /**
     * Pairs every expected tensor with its checkpoint tensor.
     *
     * @throws FormatException naming the missing tensors, the unexpected ones (with their file), or a tensor whose shape
     *                         differs from what config.json implies
     */
    public static List<Matched> match(HfModelConfig config, List<CheckpointTensor> tensors, Path modelDir)
            throws FormatException {
        Map<String, CheckpointTensor> byName = new LinkedHashMap<>();
        for (CheckpointTensor t : tensors) {
            if (!TensorNames.isIgnored(t.name())) {
                byName.put(t.name(), t);
            }
        }
        // a tied checkpoint may still carry lm_head (a copy of the embeddings); llama.cpp wants no output.weight then
        if (config.tiedEmbeddings()) {
            byName.remove(TensorNames.HF_OUTPUT);
        }
        List<Matched> matched = new ArrayList<>();
        List<String> missing = new ArrayList<>();
        for (Expected e : expected(config)) {
            CheckpointTensor t = byName.remove(e.hfName());
            if (t == null) {
                missing.add(e.hfName());
                continue;
            }
            if (!Arrays.equals(t.shape(), e.shape())) {
                throw new FormatException(t.file(), "tensor " + t.name(), -1, "shape " + Arrays.toString(t.shape())
                        + " does not match config.json, which implies " + Arrays.toString(e.shape()));
            }
            matched.add(new Matched(e, t));
        }
        Path configFile = modelDir.resolve("config.json");
        if (!missing.isEmpty()) {
            throw new FormatException(configFile, "tensors", -1, missing.size() + " tensor(s) the config needs are"
                    + " missing from the checkpoint: " + abbreviate(missing));
        }
        if (!byName.isEmpty()) {
            CheckpointTensor first = byName.values().iterator().next();
            throw new FormatException(first.file(), "tensors", -1, byName.size() + " tensor(s) a "
                    + config.architecture() + " with this config.json does not have: "
                    + abbreviate(new ArrayList<>(byName.keySet())));
        }
        return matched;
    }

    private static String abbreviate(List<String> names) {
        int shown = Math.min(names.size(), 8);
        String list = names.subList(0, shown).stream().collect(Collectors.joining(", "));
        return names.size() > shown ? list + ", ... (" + (names.size() - shown) + " more)" : list;
    }
}
