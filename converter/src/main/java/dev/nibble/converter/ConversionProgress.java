package dev.nibble.converter;

import dev.nibble.formats.gguf.GgufTensorInfo;

/** Receives the progress of a conversion; called from the converting thread only. */
public interface ConversionProgress {

    /** Before the first tensor: the bytes of tensor data the output file will hold. */
    void start(long totalBytes, int tensorCount);

    /** A tensor begins. */
    void tensor(int index, GgufTensorInfo info);

    /** {@code bytes} more of tensor data were written. */
    void advance(long bytes);

    /** The output file is complete and in place. */
    void done();

    /** A listener that ignores everything. */
    static ConversionProgress none() {
        return new ConversionProgress() {
            @Override
            public void start(long totalBytes, int tensorCount) {
            }

            @Override
            public void tensor(int index, GgufTensorInfo info) {
            }

            @Override
            public void advance(long bytes) {
            }

            @Override
            public void done() {
            }
        };
    }
}
