package dev.nibble.runtime;

import java.util.ArrayList;
import java.util.List;

/**
 * Where a model runs: one backend, or consecutive ranges of its layers on several, in order (the first layers on a
 * GPU and the rest on the CPU). The first backend that runs layers also looks up the token embeddings; the last one
 * also computes the logits; between two backends only the residual stream crosses, once per pass.
 *
 * <p>Each backend gets a number of layers, or {@link #FIT}: as many as its free memory holds (weights and a KV cache of
 * the planned context), the last backend taking what is left. {@link Model#load} decides the numbers and
 * {@link Model#placementReport()} says what it decided and why. A placement owns its backends: closing it closes them.
 */
public final class Placement implements AutoCloseable {

    /** A layer count meaning: as many as fit in the backend's free memory (the last backend: the rest). */
    public static final int FIT = -1;

    private final List<Backend> backends;
    private final int[] layers;

    private Placement(List<Backend> backends, int[] layers) {
        this.backends = List.copyOf(backends);
        this.layers = layers.clone();
    }

    /** Every layer on {@code backend}. */
    public static Placement of(Backend backend) {
        return new Placement(List.of(backend), new int[] {FIT});
    }

    /**
     * The first {@code firstLayers} layers on {@code first} ({@link #FIT}: as many as its memory holds; more than the
     * model has: all of them) and the rest on {@code rest}.
     */
    public static Placement split(Backend first, int firstLayers, Backend rest) {
        if (firstLayers < FIT) {
            throw new IllegalArgumentException("a layer count must be 0 or more, is " + firstLayers);
        }
        return new Placement(List.of(first, rest), new int[] {firstLayers, FIT});
    }

    /** The backends, in layer order. */
    public List<Backend> backends() {
        return backends;
    }

    /** The layer count asked of backend {@code i}: a number, or {@link #FIT}. */
    int asked(int i) {
        return layers[i];
    }

    /** Closes every backend (each once, even when the same one appears twice). */
    @Override
    public void close() {
        List<Backend> closed = new ArrayList<>();
        RuntimeException failure = null;
        for (Backend b : backends) {
            if (closed.stream().anyMatch(c -> c == b)) {
                continue;
            }
            closed.add(b);
            try {
                b.close();
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }
}
