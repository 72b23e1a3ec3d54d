package dev.nibble.cli.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.converter.LlamaMetadata;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.runtime.SamplerSettings;
import org.junit.jupiter.api.Test;

/** Which sampling values win: the option given, then the model's stored default, then llama.cpp's. */
class SamplingOptionsTest {

    @Test
    void givenThenModelThenBuiltIn() {
        GgufMetadata meta = GgufMetadata.builder().putF32(LlamaMetadata.TEMPERATURE, 0.6f).putF32(LlamaMetadata.TOP_P, 0.9f)
                .putF32(LlamaMetadata.REPETITION_PENALTY, 1.1f).build();
        SamplingOptions options = new SamplingOptions();
        SamplingOptions.Resolved model = options.resolve(meta, 7);
        assertEquals(new SamplerSettings(0.6f, 40, 0.9f, 0.05f, 1.1f, 0, 0, 7), model.settings());
        assertEquals("sampling: model defaults (temperature 0.6, top-p 0.9, repeat-penalty 1.1)", model.description());

        options.temperature = 0f;
        options.minP = 0.1f;
        SamplingOptions.Resolved mixed = options.resolve(meta, 7);
        assertEquals(new SamplerSettings(0f, 40, 0.9f, 0.1f, 1.1f, 0, 0, 7), mixed.settings());
        assertEquals("sampling: --temperature 0 --min-p 0.1; model defaults (top-p 0.9, repeat-penalty 1.1)",
                mixed.description());

        assertEquals("sampling: nibble defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05)",
                new SamplingOptions().resolve(GgufMetadata.builder().build(), 1).description());
    }

    @Test
    void doSampleFalseIsGreedyUnlessATemperatureIsGiven() {
        GgufMetadata meta = GgufMetadata.builder().putBool(LlamaMetadata.DO_SAMPLE, false)
                .putF32(LlamaMetadata.TEMPERATURE, 0.7f).putI32(LlamaMetadata.TOP_K, 20).build();
        SamplingOptions options = new SamplingOptions();
        assertEquals(0f, options.resolve(meta, 1).settings().temperature());
        assertEquals(20, options.resolve(meta, 1).settings().topK());
        options.temperature = 0.5f;
        assertEquals(0.5f, options.resolve(meta, 1).settings().temperature());
    }

    @Test
    void anUnusableStoredValueSaysItIsTheModels() {
        GgufMetadata meta = GgufMetadata.builder().putF32(LlamaMetadata.TOP_P, 0f).build();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new SamplingOptions().resolve(meta, 1));
        assertTrue(e.getMessage().contains("the model's default: top-p 0") && e.getMessage().contains("give the option"),
                e.getMessage());
    }
}
