package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class RopeScalingTest {

    @Test
    void llama31FactorsMatchLlamaCppForLlama31Eight8B() {
        // theta 500000, head dim 128, factor 8, low 1, high 4, original context 8192 (Llama 3.1 8B's config);
        // expected values computed with numpy in float32 following convert_hf_to_gguf.py's generate_extra_tensors
        float[] f = new RopeScaling.Llama3(8, 1, 4, 8192).frequencyFactors(500000, 128);
        assertEquals(64, f.length);
        for (int i = 0; i <= 28; i++) {
            assertEquals(1f, f[i], "high frequency " + i + " is kept");
        }
        float[] band = {1.2074838876724243f, 1.5534145832061768f, 2.026313066482544f, 2.6945300102233887f,
            3.684253215789795f, 5.257327079772949f};
        for (int i = 0; i < band.length; i++) {
            assertEquals(band[i], f[29 + i], 2e-6f * band[i], "blended frequency " + (29 + i));
        }
        for (int i = 35; i < 64; i++) {
            assertEquals(8f, f[i], "low frequency " + i + " is divided by the factor");
        }
    }
}
