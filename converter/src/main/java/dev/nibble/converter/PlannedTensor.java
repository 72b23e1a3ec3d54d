package dev.nibble.converter;

import dev.nibble.formats.gguf.GgufTensorInfo;

/** One tensor of the output file: its name, type and dims, and where its rows come from. */
record PlannedTensor(GgufTensorInfo info, RowSource source) {
}
