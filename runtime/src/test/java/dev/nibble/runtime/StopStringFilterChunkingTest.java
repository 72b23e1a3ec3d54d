package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Random texts cut into random pieces: what comes out is always the text up to the first stop string, no more. */
class StopStringFilterChunkingTest {

    private static final List<String> STOPS = List.of("[INST]", "<|im_start|>", "</s>");

    @Test
    void textUpToTheFirstStopStringComesThroughWhateverTheChunking() {
        Random random = new Random(99);
        String[] atoms = {"a", "b", " ", "[", "[IN", "INST]", "[INST]", "<", "</", "s>", "</s>", "<|im_", "start|>", "é"};
        for (int trial = 0; trial < 2000; trial++) {
            StringBuilder text = new StringBuilder();
            for (int i = random.nextInt(12); i > 0; i--) {
                text.append(atoms[random.nextInt(atoms.length)]);
            }
            String s = text.toString();
            int first = STOPS.stream().mapToInt(s::indexOf).filter(i -> i >= 0).min().orElse(-1);
            String expected = first < 0 ? s : s.substring(0, first);
            StringBuilder shown = new StringBuilder();
            StopStringFilter filter = new StopStringFilter(STOPS, shown::append);
            boolean stopped = false;
            int at = 0;
            while (at < s.length() && !stopped) {
                int end = Math.min(s.length(), at + random.nextInt(4));
                stopped = filter.accept(s.substring(at, end));
                // Nothing shown is ever part of a stop string.
                assertEquals(expected.substring(0, shown.length()), shown.toString(), s);
                at = end;
            }
            if (!stopped) {
                filter.flush();
            }
            assertEquals(expected, shown.toString(), s);
            assertEquals(first >= 0, stopped, s);
        }
    }
}
