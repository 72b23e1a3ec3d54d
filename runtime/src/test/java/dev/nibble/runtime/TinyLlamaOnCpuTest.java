package dev.nibble.runtime;

/** The tiny Llama end to end on the CPU kernels: logits within 1e-3 of Hugging Face's float32 run. */
class TinyLlamaOnCpuTest extends TinyLlamaEndToEnd {

    @Override
    Placement newPlacement() {
        return Placement.of(new CpuBackend(0));
    }

    @Override
    double logitTolerance() {
        return 1e-3;
    }
}
