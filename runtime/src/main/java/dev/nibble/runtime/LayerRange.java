package dev.nibble.runtime;

/** Layers [first, end) of a model, run by {@code backend}: one part of a {@link Placement} once decided. */
record LayerRange(Backend backend, int first, int end) {

    int layers() {
        return end - first;
    }
}
