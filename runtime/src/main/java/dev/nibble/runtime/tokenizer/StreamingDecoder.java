package dev.nibble.runtime.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Decodes one token id at a time. Each call returns only the text whose UTF-8 characters are complete, holding back
 * the bytes of a character split across byte tokens, so that the pieces joined equal decoding all ids at once.
 */
public final class StreamingDecoder {

    private final Tokenizer tokenizer;
    private final boolean skipSpecial;
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();
    private boolean started;

    StreamingDecoder(Tokenizer tokenizer, boolean skipSpecial) {
        this.tokenizer = tokenizer;
        this.skipSpecial = skipSpecial;
    }

    /** Takes the next id and returns the newly completed text (possibly empty). */
    public String next(int id) {
        pending.writeBytes(tokenizer.bytesOf(id, skipSpecial));
        byte[] buf = pending.toByteArray();
        StringBuilder text = new StringBuilder();
        int used = decodeComplete(buf, text, false);
        pending.reset();
        pending.write(buf, used, buf.length - used);
        return emit(text);
    }

    /** Ends the stream: bytes of an unfinished character come out as U+FFFD each. */
    public String finish() {
        byte[] buf = pending.toByteArray();
        pending.reset();
        StringBuilder text = new StringBuilder();
        decodeComplete(buf, text, true);
        return emit(text);
    }

    private String emit(StringBuilder text) {
        if (!started && !text.isEmpty()) {
            started = true;
            // SentencePiece's dummy prefix: the first space of the whole output is the one encoding added.
            if (tokenizer.stripsLeadingSpace() && text.charAt(0) == ' ') {
                text.deleteCharAt(0);
            }
        }
        return text.toString();
    }

    /**
     * Appends the complete UTF-8 characters at the start of buf to text and returns how many bytes they used.
     * Invalid bytes become U+FFFD one by one; an incomplete last character is left unless {@code atEnd}.
     */
    private static int decodeComplete(byte[] buf, StringBuilder text, boolean atEnd) {
        int i = 0;
        while (i < buf.length) {
            int b = buf[i] & 0xff;
            int need = b < 0x80 ? 1 : b >= 0xC2 && b < 0xE0 ? 2 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xF0 && b < 0xF5 ? 4 : 0;
            if (need == 0) {
                text.append('\uFFFD');
                i++;
                continue;
            }
            int have = 1;
            while (have < need && i + have < buf.length && validContinuation(b, have, buf[i + have] & 0xff)) {
                have++;
            }
            if (have == need) {
                text.append(new String(buf, i, need, StandardCharsets.UTF_8));
                i += need;
            } else if (i + have == buf.length && !atEnd) {
                break;
            } else {
                text.append('\uFFFD');
                i++;
            }
        }
        return i;
    }

    /** Whether c may follow at position pos of a character led by lead (excluding overlong forms and surrogates). */
    private static boolean validContinuation(int lead, int pos, int c) {
        if ((c & 0xC0) != 0x80) {
            return false;
        }
        if (pos == 1) {
            return switch (lead) {
                case 0xE0 -> c >= 0xA0;
                case 0xED -> c < 0xA0;
                case 0xF0 -> c >= 0x90;
                case 0xF4 -> c < 0x90;
                default -> true;
            };
        }
        return true;
    }
}
