package dev.nibble.runtime;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufTensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Optional;
import java.util.function.BiFunction;

/**
 * The weights of a Llama model as slices of the mapped GGUF file (zero copy), each checked against the config.
 *
 * @param tokenEmbedding  {@code token_embd.weight}, one row per token
 * @param outputNorm      {@code output_norm.weight}, F32
 * @param output          {@code output.weight}, or the token embedding when the model ties them
 * @param ropeFactors     {@code rope_freqs.weight} (F32, headDim/2 divisors of each RoPE frequency, Llama 3.1
 *                        scaling as llama.cpp stores it), or null
 */
public record ModelWeights(Matrix tokenEmbedding, MemorySegment outputNorm, Matrix output, Layer[] layers,
                           MemorySegment ropeFactors) {

    /** One transformer block: norms are F32 vectors, projections are matrices of any supported type. */
    public record Layer(MemorySegment attentionNorm, Matrix wq, Matrix wk, Matrix wv, Matrix wo,
                        MemorySegment ffnNorm, Matrix gate, Matrix up, Matrix down) {
        /** The seven projection matrices. */
        public Matrix[] matrices() {
            return new Matrix[] {wq, wk, wv, wo, gate, up, down};
        }
    }

    /** Finds every tensor the config needs in {@code file}; a missing tensor or a wrong shape is refused by name. */
    public static ModelWeights from(GgufFile file, LlamaConfig c) throws FormatException {
        Path path = file.path();
        Matrix embedding = matrix(file, "token_embd.weight", c.vocabSize(), c.dim());
        Optional<GgufTensor> out = file.tensor("output.weight");
        Matrix output = out.isPresent() ? matrix(file, "output.weight", c.vocabSize(), c.dim()) : embedding;
        Layer[] layers = new Layer[c.layers()];
        for (int i = 0; i < c.layers(); i++) {
            String p = "blk." + i + ".";
            layers[i] = new Layer(
                    vector(file, p + "attn_norm.weight", c.dim()),
                    matrix(file, p + "attn_q.weight", c.heads() * c.headDim(), c.dim()),
                    matrix(file, p + "attn_k.weight", c.kvDim(), c.dim()),
                    matrix(file, p + "attn_v.weight", c.kvDim(), c.dim()),
                    matrix(file, p + "attn_output.weight", c.dim(), c.heads() * c.headDim()),
                    vector(file, p + "ffn_norm.weight", c.dim()),
                    matrix(file, p + "ffn_gate.weight", c.ffnDim(), c.dim()),
                    matrix(file, p + "ffn_up.weight", c.ffnDim(), c.dim()),
                    matrix(file, p + "ffn_down.weight", c.dim(), c.ffnDim()));
        }
        MemorySegment ropeFactors = file.tensor("rope_freqs.weight").isPresent()
                ? vector(file, "rope_freqs.weight", c.headDim() / 2) : null;
        if (file.tensor("blk.0.ffn_gate_exps.weight").isPresent()) {
            throw new FormatException(path, "blk.0.ffn_gate_exps.weight", -1,
                    "this is a mixture-of-experts model, which nibble does not run");
        }
        return new ModelWeights(embedding, vector(file, "output_norm.weight", c.dim()), output, layers, ropeFactors);
    }

    /**
     * Bytes that layers [first, end) take once placed on {@code backend} (0 on the CPU, which reads them from the
     * mapping), with the token embeddings when {@code embedding}, the output norm and matrix when {@code output}, and
     * the RoPE factors, which every backend that runs layers holds.
     */
    public long placedBytes(Backend backend, int first, int end, boolean embedding, boolean output) {
        long total = (embedding ? placed(backend, tokenEmbedding) : 0)
                + (output ? vectorBytes(backend, outputNorm)
                + (embedding && this.output == tokenEmbedding ? 0 : placed(backend, this.output)) : 0);
        for (int i = first; i < end; i++) {
            Layer l = layers[i];
            for (Matrix m : l.matrices()) {
                total += placed(backend, m);
            }
            total += 2 * vectorBytes(backend, l.attentionNorm());
        }
        return total + (ropeFactors == null ? 0 : vectorBytes(backend, ropeFactors));
    }

    private static long placed(Backend backend, Matrix m) {
        return backend.placedBytes(m.type(), m.rows(), m.cols());
    }

    private static long vectorBytes(Backend backend, MemorySegment v) {
        return backend.placedBytes(GgmlType.F32, 1, (int) (v.byteSize() / Float.BYTES));
    }

    /**
     * These weights placed (see {@link Backend#place}): layer i on {@code layerBackends[i]}, the token embeddings on
     * {@code first}, the output norm and matrix on {@code last}; alive until {@code arena} closes. The RoPE factors
     * stay as they are: each backend that runs layers places its own copy. {@code progress} receives the bytes of
     * the file placed so far after each tensor.
     */
    public ModelWeights placeOn(Backend[] layerBackends, Backend first, Backend last, Arena arena,
                                LoadProgress progress) {
        long[] done = {0};
        long total = fileBytes();
        BiFunction<Backend, Matrix, Matrix> place = (backend, m) -> {
            Matrix p = backend.place(m, arena);
            done[0] += m.data().byteSize();
            if (p != m) {
                progress.placed(done[0], total);
            }
            return p;
        };
        Matrix embedding = place.apply(first, tokenEmbedding);
        Matrix out = output == tokenEmbedding && first == last ? embedding : place.apply(last, output);
        Layer[] placed = new Layer[layers.length];
        for (int i = 0; i < layers.length; i++) {
            Layer l = layers[i];
            Backend b = layerBackends[i];
            placed[i] = new Layer(b.placeVector(l.attentionNorm(), arena), place.apply(b, l.wq()),
                    place.apply(b, l.wk()), place.apply(b, l.wv()), place.apply(b, l.wo()),
                    b.placeVector(l.ffnNorm(), arena), place.apply(b, l.gate()), place.apply(b, l.up()),
                    place.apply(b, l.down()));
        }
        return new ModelWeights(embedding, last.placeVector(outputNorm, arena), out, placed, ropeFactors);
    }

    /** Bytes of the file these weights cover (what placing them reads). */
    public long fileBytes() {
        long total = tokenEmbedding.data().byteSize() + (output == tokenEmbedding ? 0 : output.data().byteSize());
        for (Layer l : layers) {
            for (Matrix m : l.matrices()) {
                total += m.data().byteSize();
            }
        }
        return total;
    }

    private static GgufTensor tensor(GgufFile file, String name) throws FormatException {
        return file.tensor(name).orElseThrow(() -> new FormatException(file.path(), name, -1,
                "is missing; the file is not a complete Llama model"));
    }

    private static Matrix matrix(GgufFile file, String name, int rows, int cols) throws FormatException {
        GgufTensor t = tensor(file, name);
        long[] dims = t.dims();
        if (dims.length != 2 || dims[0] != cols || dims[1] != rows) {
            throw new FormatException(file.path(), name, t.fileOffset(), "has dims " + Arrays.toString(dims)
                    + " but the metadata implies [" + cols + ", " + rows + "]");
        }
        if (cols % t.type().blockSize() != 0) {
            throw new FormatException(file.path(), name, t.fileOffset(),
                    "rows of " + cols + " do not fill whole " + t.type() + " blocks");
        }
        return new Matrix(name, t.type(), rows, cols, t.data());
    }

    private static MemorySegment vector(GgufFile file, String name, int n) throws FormatException {
        GgufTensor t = tensor(file, name);
        long[] dims = t.dims();
        if (t.info().elementCount() != n || dims[0] != n) {
            throw new FormatException(file.path(), name, t.fileOffset(),
                    "has dims " + Arrays.toString(dims) + " but " + n + " elements are expected");
        }
        if (t.type() != GgmlType.F32) {
            throw new FormatException(file.path(), name, t.fileOffset(),
                    "is " + t.type() + "; norm and RoPE vectors must be F32 (as llama.cpp writes them)");
        }
        return t.data();
    }

    @Override
    public boolean equals(Object o) {
        return this == o;
    }

    @Override
    public int hashCode() {
        return System.identityHashCode(this);
    }

    @Override
    public String toString() {
        return "ModelWeights[" + layers.length + " layers, output " + output.name() + "]";
    }
}
