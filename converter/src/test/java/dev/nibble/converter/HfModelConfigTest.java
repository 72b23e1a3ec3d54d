package dev.nibble.converter;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HfModelConfigTest {

    @TempDir
    Path dir;

    private HfModelConfig write(String json) throws IOException {
        Files.writeString(dir.resolve("config.json"), json);
        return HfModelConfig.load(dir);
    }

    @Test
    void tinyLlamaConfigIsReadWithGroupedHeads() throws IOException {
        HfModelConfig c = HfModelConfig.load(TestData.tinySafetensors());
        assertEquals("LlamaForCausalLM", c.architecture());
        assertEquals(256, c.hiddenSize());
        assertEquals(6, c.layerCount());
        assertEquals(8, c.headCount());
        assertEquals(2, c.kvHeadCount());
        assertEquals(4, c.groupSize());
        assertEquals(32, c.headDim());
        assertEquals(768, c.intermediateSize());
        assertEquals(1e-5, c.rmsNormEps());
        assertEquals(10000.0, c.ropeTheta());
        assertNull(c.ropeScaling());
        assertEquals(512, c.maxPositions());
        assertFalse(c.tiedEmbeddings());
        assertEquals(2048, c.vocabSize());
    }

    @Test
    void optionalFieldsTakeTransformersDefaults() throws IOException {
        HfModelConfig c = write("""
                {"architectures": ["MistralForCausalLM"], "hidden_size": 96, "num_hidden_layers": 3,
                 "num_attention_heads": 6, "intermediate_size": 200, "vocab_size": 77}""");
        assertEquals(6, c.kvHeadCount());
        assertEquals(16, c.headDim());
        assertEquals(1e-6, c.rmsNormEps());
        assertEquals(10000.0, c.ropeTheta());
        assertEquals(2048, c.maxPositions());
        assertFalse(c.tiedEmbeddings());
    }

    @Test
    void anExplicitHeadDimThatMatchesIsReadAndOneThatDoesNotIsRefused() throws IOException {
        HfModelConfig c = write("""
                {"architectures": ["MistralForCausalLM"], "hidden_size": 512, "num_hidden_layers": 1, "head_dim": 128,
                 "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 64, "vocab_size": 10,
                 "tie_word_embeddings": true}""");
        assertEquals(128, c.headDim());
        assertEquals(1, c.kvHeadCount());
        assertTrue(c.tiedEmbeddings());
        // heads wider than hidden_size / heads (Mistral Nemo's layout): the runtime cannot run them yet
        FormatException e = assertThrows(FormatException.class, () -> write("""
                {"architectures": ["MistralForCausalLM"], "hidden_size": 160, "num_hidden_layers": 1, "head_dim": 128,
                 "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 64, "vocab_size": 10}"""));
        assertTrue(e.getMessage().contains("is not hidden_size 160"), e.getMessage());
    }

    @Test
    void llama31RopeScalingIsReadFromTransformers4Layout() throws IOException {
        HfModelConfig c = write(llamaWith("""
                "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192, "rope_type": "llama3"}"""));
        assertEquals(500000.0, c.ropeTheta());
        RopeScaling.Llama3 s = assertInstanceOf(RopeScaling.Llama3.class, c.ropeScaling());
        assertEquals(new RopeScaling.Llama3(8.0, 1.0, 4.0, 8192), s);
    }

    @Test
    void llama31RopeScalingIsReadFromTransformers5Layout() throws IOException {
        HfModelConfig c = write(llamaWith("""
                "rope_parameters": {"rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 2.0,
                "high_freq_factor": 6.0, "original_max_position_embeddings": 4096, "rope_type": "llama3"}"""));
        assertEquals(500000.0, c.ropeTheta());
        assertEquals(new RopeScaling.Llama3(32.0, 2.0, 6.0, 4096), c.ropeScaling());
    }

    @Test
    void linearScalingIsReadInBothLayoutsAndOldTypeKey() throws IOException {
        assertEquals(new RopeScaling.Linear(4.0),
                write(llamaWith("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}")).ropeScaling());
        HfModelConfig c = write(llamaWith("\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 2.5, \"rope_theta\": 1e6}"));
        assertEquals(new RopeScaling.Linear(2.5), c.ropeScaling());
        assertEquals(1e6, c.ropeTheta());
    }

    @Test
    void transformers5LayoutWinsOverTopLevelTheta() throws IOException {
        HfModelConfig c = write(llamaWith("\"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 250000.0}"));
        assertEquals(250000.0, c.ropeTheta());
        assertNull(c.ropeScaling());
    }

    @Test
    void unsupportedRopeScalingIsNamed() {
        FormatException e = assertThrows(FormatException.class,
                () -> write(llamaWith("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}")));
        assertTrue(e.getMessage().contains("yarn"), e.getMessage());
    }

    @Test
    void unsupportedArchitectureIsNamedWithFile() {
        FormatException e = assertThrows(FormatException.class, () -> write("""
                {"architectures": ["GPT2LMHeadModel"], "hidden_size": 8}"""));
        assertTrue(e.getMessage().contains("GPT2LMHeadModel"), e.getMessage());
        assertTrue(e.getMessage().contains("config.json"), e.getMessage());
    }

    @Test
    void alreadyQuantizedCheckpointsAreRefusedByMethod() {
        FormatException e = assertThrows(FormatException.class,
                () -> write(llamaWith("\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}")));
        assertTrue(e.getMessage().contains("gptq") && e.getMessage().contains("quantization_config"), e.getMessage());
    }

    @Test
    void missingConfigIsReportedWithPath() {
        FormatException e = assertThrows(FormatException.class, () -> HfModelConfig.load(dir));
        assertTrue(e.getMessage().contains(dir.resolve("config.json").toString()), e.getMessage());
    }

    @Test
    void missingRequiredFieldIsNamed() {
        FormatException e = assertThrows(FormatException.class, () -> write("""
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "vocab_size": 10}"""));
        assertTrue(e.getMessage().contains("intermediate_size"), e.getMessage());
    }

    @Test
    void kvHeadsThatDoNotDivideHeadsAreRejected() {
        FormatException e = assertThrows(FormatException.class, () -> write("""
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 3, "intermediate_size": 8, "vocab_size": 10}"""));
        assertTrue(e.getMessage().contains("num_key_value_heads"), e.getMessage());
    }

    @Test
    void wrongValueTypeAndBrokenJsonAreRejected() throws IOException {
        FormatException e = assertThrows(FormatException.class, () -> write("""
                {"architectures": ["LlamaForCausalLM"], "hidden_size": "big"}"""));
        assertTrue(e.getMessage().contains("hidden_size"), e.getMessage());
        e = assertThrows(FormatException.class, () -> write("{\"architectures\": [\"LlamaForCausalLM\"], "));
        assertTrue(e.getMessage().contains("config.json"), e.getMessage());
    }

    private static String llamaWith(String extra) {
        return """
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 10, %s}""".formatted(extra);
    }

    /** What the runtime would refuse after a whole conversion is refused before it starts, naming the field. */
    @Test
    void configsTheRuntimeCannotRunAreRefusedUpFront() {
        String base = "\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 96, \"num_hidden_layers\": 3, "
                + "\"num_attention_heads\": 6, \"intermediate_size\": 200, \"vocab_size\": 77";
        String[][] cases = {
            {"\"max_position_embeddings\": 0", "max_position_embeddings", "must be positive"},
            {"\"rms_norm_eps\": -1e-5", "rms_norm_eps", "must be a small positive number"},
            {"\"head_dim\": 32", "head_dim", "is not hidden_size 96"},
            {"\"hidden_act\": \"gelu\"", "hidden_act", "\"gelu\" is not implemented"},
        };
        for (String[] c : cases) {
            FormatException e = assertThrows(FormatException.class, () -> write("{" + base + ", " + c[0] + "}"), c[0]);
            assertTrue(e.getMessage().contains(c[1]) && e.getMessage().contains(c[2]), e.getMessage());
        }
        FormatException wide = assertThrows(FormatException.class, () -> write("""
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "intermediate_size": 200, "vocab_size": 77}"""));
        assertTrue(wide.getMessage().contains("1024 is more than the 512"), wide.getMessage());
    }
}
