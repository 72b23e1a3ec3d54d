package dev.nibble.cli.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** Piped chat input: lines as BufferedReader ends them, and no line without end ({@code < /dev/zero}) fills memory. */
class PlainLineSourceTest {

    private static PlainLineSource source(InputStream in) {
        return new PlainLineSource(in, new PrintWriter(new StringWriter()));
    }

    @Test
    void linesEndAtLfCrOrCrLf() throws IOException {
        PlainLineSource s = source(new ByteArrayInputStream("a\nb\r\nc\rd\n\ne".getBytes(StandardCharsets.UTF_8)));
        for (String expected : new String[] {"a", "b", "c", "d", "", "e"}) {
            assertEquals(expected, s.readLine(""));
        }
        assertNull(s.readLine(""));
    }

    @Test
    void aLineWithoutEndIsRefusedAtTheLimit() {
        InputStream zeros = new InputStream() { // /dev/zero: never a line break, never an end
            @Override
            public int read() {
                return 0;
            }

            @Override
            public int read(byte[] b, int off, int len) {
                java.util.Arrays.fill(b, off, off + len, (byte) 0);
                return len;
            }
        };
        IOException e = assertThrows(IOException.class, () -> source(zeros).readLine(""));
        assertTrue(e.getMessage().startsWith("standard input: a line of more than " + PlainLineSource.MAX_LINE), e.getMessage());
    }
}
