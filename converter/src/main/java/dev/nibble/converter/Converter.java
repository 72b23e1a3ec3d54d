package dev.nibble.converter;

import dev.nibble.formats.AtomicOutputFile;
import dev.nibble.formats.FormatException;
import dev.nibble.formats.checkpoint.Checkpoint;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufTensorInfo;
import dev.nibble.formats.gguf.GgufWriter;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.formats.vocab.Vocabulary;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * Converts a Hugging Face Llama model folder into one GGUF file: reads and checks the config, tokenizer and weights,
 * plans every output tensor and its type, checks the disk has room, then streams the tensors through the quantizers
 * into a temporary file beside {@code OUT} and renames it to {@code OUT} (an {@link AtomicOutputFile}). On any failure,
 * and on Ctrl-C, {@code OUT} is untouched and the temporary file is gone. {@code OUT} is never one of the files read, nor
 * anything but a regular file, even with {@code force}; files of the model folder that link outside it are refused
 * unless {@code allowExternalLinks}.
 */
public final class Converter {

    /** Tensor data is aligned to GGUF's default 32 bytes; nibble does not set general.alignment. */
    private static final long ALIGNMENT = 32;

    private Converter() {
    }

    /** What a finished conversion wrote. */
    public record Result(Path output, List<GgufTensorInfo> tensors, long tensorBytes) {
    }

    /** Runs a conversion. */
    public static Result convert(ConvertOptions options) throws IOException {
        Path out = options.output().toAbsolutePath().normalize();
        Path modelDir = options.modelDir();
        if (!Files.isDirectory(modelDir)) {
            throw new IOException(modelDir + ": not a folder; expected a Hugging Face model folder");
        }
        // Checked before anything is read, and again once the checkpoint's shards are known.
        AtomicOutputFile.checkTarget(out, options.force(), ModelFolder.knownInputs(modelDir));
        if (!options.allowExternalLinks()) {
            ModelFolder.refuseExternalLinks(modelDir);
        }
        HfModelConfig config = HfModelConfig.load(modelDir);
        GenerationConfig generation = GenerationConfig.load(modelDir);
        Optional<String> template = ChatTemplateSource.find(modelDir);
        Vocabulary vocabulary = fitVocabulary(HuggingFaceVocabulary.load(modelDir), config, modelDir);
        GgufMetadata metadata = LlamaMetadata.build(options.name(), config, generation, template, vocabulary, options.recipe());

        try (Checkpoint checkpoint = Checkpoint.open(modelDir)) {
            List<Path> inputs = ModelFolder.inputs(modelDir, checkpoint);
            AtomicOutputFile.checkTarget(out, options.force(), inputs);
            List<PlannedTensor> plan = plan(config, LlamaLayout.match(config, checkpoint.tensors(), modelDir), options.recipe());
            List<GgufTensorInfo> infos = plan.stream().map(PlannedTensor::info).toList();
            long bytes = 0;
            for (GgufTensorInfo t : infos) {
                bytes += (t.byteSize() + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
            }
            checkSpace(out.getParent(), out, bytes, options.diskSpace());
            write(out, inputs, metadata, plan, infos, bytes, options);
            return new Result(out, infos, bytes);
        }
    }

    /** The output tensors in file order: llama.cpp puts generated tensors first, then the model's. */
    static List<PlannedTensor> plan(HfModelConfig config, List<LlamaLayout.Matched> matched, Recipe recipe) {
        List<PlannedTensor> plan = new ArrayList<>();
        if (config.ropeScaling() instanceof RopeScaling.Llama3 llama3) {
            float[] factors = llama3.frequencyFactors(config.ropeTheta(), config.headDim());
            plan.add(planned(TensorNames.ROPE_FREQS, new long[] {factors.length}, new GeneratedRows(factors), config, recipe));
        }
        for (LlamaLayout.Matched m : matched) {
            long[] shape = m.expected().shape();
            long[] dims = new long[shape.length];
            for (int i = 0; i < shape.length; i++) {
                dims[i] = shape[shape.length - 1 - i];
            }
            plan.add(planned(m.expected().ggufName(), dims, new CheckpointRows(m.source(), m.expected().permutation()),
                    config, recipe));
        }
        return plan;
    }

    private static PlannedTensor planned(String name, long[] dims, RowSource source, HfModelConfig config, Recipe recipe) {
        return new PlannedTensor(new GgufTensorInfo(name, recipe.tensorType(name, dims, config), dims), source);
    }

    private static void checkSpace(Path outDir, Path out, long bytes, DiskSpace diskSpace) throws IOException {
        long usable = diskSpace.usableBytes(outDir);
        if (usable < bytes) {
            throw new IOException("not enough disk space for " + out + ": its tensors need " + bytes + " bytes ("
                    + ConsoleProgress.size(bytes) + "), " + outDir + " has " + usable + " bytes ("
                    + ConsoleProgress.size(usable) + ") free");
        }
    }

    private static void write(Path out, List<Path> inputs, GgufMetadata metadata, List<PlannedTensor> plan,
                              List<GgufTensorInfo> infos, long bytes, ConvertOptions options) throws IOException {
        try (GgufWriter writer = GgufWriter.create(out, metadata, infos, options.force(), inputs)) {
            options.progress().start(bytes, plan.size());
            new TensorStreamer(options.threads()).stream(plan, writer, options.progress());
            writer.finish();
        }
        options.progress().done();
    }

    /**
     * Makes the vocabulary exactly {@code vocab_size} tokens long, as the embedding matrix is: missing ids are padded
     * the way llama.cpp's converter does ({@code [PAD1]}, {@code [PAD2]}, ... for SentencePiece vocabularies,
     * {@code [PAD<id>]} for byte-level ones; type "unused"); a vocabulary longer than the embeddings is an error.
     */
    static Vocabulary fitVocabulary(Vocabulary v, HfModelConfig config, Path modelDir) throws FormatException {
        int have = v.tokens().size();
        int want = config.vocabSize();
        if (have == want) {
            return v;
        }
        if (have > want) {
            throw new FormatException(modelDir.resolve("config.json"), "vocab_size", -1, "is " + want
                    + " but the tokenizer has " + have + " tokens; the embeddings have no row for the extra ones");
        }
        List<String> tokens = new ArrayList<>(v.tokens());
        int[] types = Arrays.copyOf(v.tokenTypes(), want);
        float[] scores = v.scores() == null ? null : Arrays.copyOf(v.scores(), want);
        for (int id = have; id < want; id++) {
            tokens.add(v.model() == Vocabulary.Model.LLAMA ? "[PAD" + (id - have + 1) + "]" : "[PAD" + id + "]");
            types[id] = Vocabulary.UNUSED;
            if (scores != null) {
                scores[id] = -1000f;
            }
        }
        return new Vocabulary(v.model(), v.preTokenizer(), tokens, scores, types, v.merges(), v.bosId(), v.eosId(),
                v.unkId(), v.padId(), v.addBos(), v.addEos(), v.addSpacePrefix());
    }
}
