package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufTensorInfo;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class ConsoleProgressTest {

    private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    private final PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8);
    private long now;

    private String printed() {
        return bytes.toString(StandardCharsets.UTF_8);
    }

    @Test
    void terminalBarShowsBytesRateAndEta() {
        ConsoleProgress p = new ConsoleProgress(out, true, () -> now);
        p.start(100L << 20, 3);
        p.tensor(1, new GgufTensorInfo("blk.0.attn_q.weight", GgmlType.Q4_K, new long[] {256, 256}));
        now = 2_000_000_000L;
        p.advance(25L << 20);
        // 25 MiB in 2 s is 12.5 MiB/s; 75 MiB left takes 6 s
        assertEquals("\r[########......................]  25% 25.0 MiB / 100.0 MiB  12.5 MiB/s  ETA 0:06  2/3 "
                + String.format("%-36s", "blk.0.attn_q.weight Q4_K"), printed());
        p.done();
        assertTrue(printed().endsWith("\n"));
    }

    @Test
    void terminalBarIsNotRedrawnMoreThanFiveTimesASecond() {
        ConsoleProgress p = new ConsoleProgress(out, true, () -> now);
        p.start(1000, 1);
        now = 100_000_000L;
        p.advance(10);
        assertEquals("", printed());
        now = 250_000_000L;
        p.advance(10);
        assertTrue(printed().contains("  2% "), printed());
    }

    @Test
    void logLinesComeEveryFiveSecondsAndAtTheEnd() {
        ConsoleProgress p = new ConsoleProgress(out, false, () -> now);
        p.start(3L << 30, 291);
        assertEquals("converting 291 tensors, 3.00 GiB\n", printed());
        now = 4_000_000_000L;
        p.advance(1L << 30);
        assertFalse(printed().contains("ETA"));
        now = 5_000_000_000L;
        p.advance(1L << 30);
        assertTrue(printed().endsWith(" 67% 2.00 GiB / 3.00 GiB, 409.6 MiB/s, ETA 0:03, tensor 1/291 \n"), printed());
        now = 8_000_000_000L;
        p.advance(1L << 30);
        p.done();
        assertTrue(printed().endsWith("done: 3.00 GiB in 8.0 s (384.0 MiB/s)\n"), printed());
        assertFalse(printed().contains("\r"));
    }

    @Test
    void durationsAndSizesAreReadable() {
        assertEquals("0:59", ConsoleProgress.duration(59.4));
        assertEquals("1:01:01", ConsoleProgress.duration(3661));
        assertEquals("512.0 KiB", ConsoleProgress.size(512 * 1024));
        assertEquals("1.50 GiB", ConsoleProgress.size(3L << 29));
    }
}
