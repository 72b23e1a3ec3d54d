package dev.nibble.runtime;

/** Told, after each weight a backend places in its own memory, how many bytes of the file's weights are done. */
@FunctionalInterface
public interface LoadProgress {

    LoadProgress NONE = (done, total) -> {};

    void placed(long doneBytes, long totalBytes);
}
