package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.runtime.nativelib.GpuTests;
import dev.nibble.testing.TestData;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/**
 * The tiny Llama end to end with its first 3 layers on the GPU and the rest on the CPU (issue 15, `--gpu-layers 3`):
 * logits within 1e-2 of Hugging Face, the same greedy text and perplexity, as on either device alone; and the shipped
 * 8-bit file gives the logits it gives on the GPU alone, prompt and recorded decode steps. Skipped, with the reason,
 * where no GPU is usable (the CPU-only split is {@link LayerSplitTest}).
 */
class TinyLlamaOnCudaAndCpuTest extends TinyLlamaEndToEnd {

    @Override
    Placement newPlacement() {
        GpuTests.assumeGpu(TinyLlamaOnCudaAndCpuTest.class);
        return Placement.split(new CudaBackend(0, 0), 3, new CpuBackend(0));
    }

    @Override
    double logitTolerance() {
        return 1e-2;
    }

    /**
     * The GPU's 8-bit matmul is batch-invariant within 1-8 and within 9-64 tokens, not across (issue 10); split with the
     * CPU, passes hold at most the CPU's 64 tokens, and the batch engine's mix of decode and prompt tokens then crosses
     * that boundary where the sequence alone does not (on the H200, prompt 1's text parted from its own after a few words).
     */
    @Override
    String batchVariance(String type) {
        return type.equals("Q8_0") ? "8-bit matmuls on the GPU are batch-invariant only within 1-8 and within 9-64 tokens"
                + " (issue 10); F16 is checked" : null;
    }

    @Test
    void theLayersGoWhereAskedAndTheQ8ModelMatchesTheGpuAlone() throws IOException {
        try (Model split = Model.load(TestData.resolve("tiny-llama.q8_0.gguf"), placement, 0, LoadProgress.NONE)) {
            int layers = split.config().layers();
            assertTrue(split.placementReport().startsWith("layers 0-2 on cuda:0 ")
                    && split.placementReport().contains(", layers 3-" + (layers - 1) + " on cpu "), split.placementReport());
            assertEquals(2, split.description().split(" \\+ ").length, split.description());
        }
        try (Placement gpu = Placement.of(new CudaBackend(0, 0))) {
            // the CPU's layers round activations to 8 bits their own way (see assertQ8LogitsClose)
            assertQ8LogitsClose(gpu, placement, 3e-2);
        }
    }
}
