package dev.nibble.runtime;

import dev.nibble.runtime.nativelib.GpuTests;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/**
 * The tiny Llama end to end on the CUDA backend (f16 KV cache, f16 tensor-core prompts): logits within 1e-2 of
 * Hugging Face, the same greedy text and perplexity; and the shipped 8-bit file gives the CPU's logits. Skipped, with
 * the reason, where no GPU is usable.
 */
class TinyLlamaOnCudaTest extends TinyLlamaEndToEnd {

    @Override
    Placement newPlacement() {
        GpuTests.assumeGpu(TinyLlamaOnCudaTest.class);
        return Placement.of(new CudaBackend(0, 0));
    }

    @Override
    double logitTolerance() {
        return 1e-2;
    }

    @Test
    void theShippedQ8ModelGivesTheCpuLogitsPromptAndDecode() throws IOException {
        try (Placement cpu = Placement.of(new CpuBackend(0))) {
            assertQ8LogitsClose(cpu, placement, 3e-2);
        }
    }
}
