package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.testing.TestData;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A model's layers split between two backends (issue 15: the first layers on a GPU, the rest on the CPU) computes
 * what one backend computes: with two CPU backends, whose kernels are the same, every logit is bit-identical, for
 * prompts, recorded decode steps and passes over several sequences; and layers fitted to a backend's memory are as
 * many as its free memory holds, which the report says.
 */
class LayerSplitTest {

    private static final Path MODEL = TestData.root().resolve("tiny-llama.q8_0.gguf");

    @TempDir
    Path dir;

    /** Logits of a prompt, then of 6 decode steps (replayed after the first), then of a pass over 3 sequences. */
    private static List<float[]> run(Model m) throws IOException {
        List<float[]> out = new ArrayList<>();
        try (KvCache cache = m.newCache(64)) {
            out.add(m.forward(new int[] {1, 450, 432, 1340, 338, 263}, cache, true));
            int next = 297;
            for (int i = 0; i < 6; i++) {
                float[] logits = m.forward(new int[] {next}, cache, false);
                out.add(logits);
                next = Sampler.argmax(logits);
            }
        }
        try (KvPool pool = m.newPool(3 * 32, 32)) {
            KvCache a = pool.open(32);
            KvCache b = pool.open(32);
            KvCache c = pool.open(32);
            m.step(List.of(new Model.Segment(a, new int[] {1, 450}, Model.Logits.LAST),
                    new Model.Segment(b, new int[] {1}, Model.Logits.LAST),
                    new Model.Segment(c, new int[] {1, 903, 250, 263}, Model.Logits.ALL)));
            float[][] step = m.step(List.of(new Model.Segment(a, new int[] {432}, Model.Logits.LAST),
                    new Model.Segment(b, new int[] {450}, Model.Logits.LAST),
                    new Model.Segment(c, new int[] {931, 1892}, Model.Logits.ALL)));
            out.addAll(List.of(step));
        }
        return out;
    }

    private static void assertSame(List<float[]> expected, List<float[]> actual, String what) {
        assertEquals(expected.size(), actual.size());
        for (int i = 0; i < expected.size(); i++) {
            assertArrayEquals(expected.get(i), actual.get(i), what + ", logits " + i);
        }
    }

    @Test
    void twoCpuBackendsSplittingTheLayersComputeTheSameLogitsBitForBit() throws IOException {
        List<float[]> alone;
        try (CpuBackend cpu = new CpuBackend(2); Model m = Model.load(MODEL, cpu)) {
            alone = run(m);
            assertNull(m.placementReport(), "one backend: nothing to report");
        }
        int layers;
        try (CpuBackend cpu = new CpuBackend(1); Model m = Model.load(MODEL, cpu)) {
            layers = m.config().layers();
        }
        assertTrue(layers >= 3, "the tiny model has layers to split: " + layers);
        for (int first : new int[] {1, layers / 2, layers - 1}) {
            try (Placement p = Placement.split(new CpuBackend(1), first, new CpuBackend(2));
                 Model m = Model.load(MODEL, p, 0, LoadProgress.NONE)) {
                assertSame(alone, run(m), first + " layers on the first backend");
                String report = m.placementReport();
                assertTrue(report.startsWith((first == 1 ? "layer 0" : "layers 0-" + (first - 1))
                        + " on cpu "), report);
                String rest = layers - first == 1 ? "layer " + first : "layers " + first + "-" + (layers - 1);
                assertTrue(report.contains(", " + rest + " on cpu ") && report.endsWith(", as asked)"),
                        report);
                assertTrue(m.description().contains("(layers 0-" + (first - 1) + ") + cpu")
                        && m.description().endsWith("(layers " + first + "-" + (layers - 1) + ")"), m.description());
            }
        }
    }

    @Test
    void moreLayersAskedThanTheModelHasPutsThemAllOnTheFirstBackend() throws IOException {
        try (Placement p = Placement.split(new CpuBackend(1), 999, new CpuBackend(1));
             Model m = Model.load(MODEL, p, 0, LoadProgress.NONE)) {
            assertEquals(p.backends().get(0).description(), m.description(), "the second backend runs nothing");
            assertTrue(m.placementReport().contains("layers 0-" + (m.config().layers() - 1) + " on cpu"),
                    m.placementReport());
        }
    }

    @Test
    void layersFittedToADevicesMemoryAreAsManyAsItHoldsAndTheRestRunElsewhere() throws IOException {
        Path file = RandomModel.write(dir.resolve("m.gguf"), 2, 1, t -> t);
        int[] prompt = RandomModel.tokens(5, 3);
        float[] alone;
        try (ReferenceBackend ref = new ReferenceBackend(); Model m = Model.load(file, ref);
             KvCache cache = m.newCache(16)) {
            alone = m.forward(prompt, cache, true);
        }
        // The device's part of a model of 2 layers: 1,000 bytes per matrix and norm placed, activations of a batch
        // of 64 tokens, and a KV cache of the planned context (RandomModel.CONTEXT = 160, under FIT_CONTEXT).
        long oneLayer;
        long twoLayers;
        try (ReferenceBackend ref = new ReferenceBackend(); Model m = Model.load(file, ref)) {
            ModelWeights w = ModelWeights.from(m.file(), m.config());
            SmallDevice probe = new SmallDevice(0);
            oneLayer = Model.plan(m.config(), w, probe, 64, 0, 1, true, false, RandomModel.CONTEXT).total();
            twoLayers = Model.plan(m.config(), w, probe, 64, 0, 2, true, true, RandomModel.CONTEXT).total();
        }
        for (long free : new long[] {oneLayer - 1, oneLayer, twoLayers - 1, twoLayers}) {
            int expected = free < oneLayer ? 0 : free < twoLayers ? 1 : 2;
            try (Placement p = Placement.split(new SmallDevice(free), Placement.FIT, new ReferenceBackend());
                 Model m = Model.load(file, p, 0, LoadProgress.NONE); KvCache cache = m.newCache(16)) {
                String report = m.placementReport();
                assertTrue(report.contains(expected + " of 2 fit in the ") && report.contains(" free on small device")
                        && report.contains("of KV cache for " + RandomModel.CONTEXT + " positions"), free + ": " + report);
                String onDevice = expected == 0 ? "" : expected == 1 ? "layer 0 on small device" : "layers 0-1 on small device";
                assertTrue(report.startsWith(expected == 0 ? "layers 0-1 on java reference" : onDevice), report);
                assertArrayEquals(alone, m.forward(prompt, cache, true), free + " bytes free");
            }
        }
    }

    @Test
    void aNegativeLayerCountIsRefused() {
        try (CpuBackend a = new CpuBackend(1); CpuBackend b = new CpuBackend(1)) {
            assertThrows(IllegalArgumentException.class, () -> Placement.split(a, -2, b));
            assertThrows(IllegalArgumentException.class, () -> Devices.open("cpu", 1, 0, -5));
        }
    }
}
