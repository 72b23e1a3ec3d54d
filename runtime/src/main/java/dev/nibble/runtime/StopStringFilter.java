package dev.nibble.runtime;

import java.util.List;
import java.util.function.Consumer;

/** Passes text on, holding back any tail that could be the start of a stop string. */
public final class StopStringFilter {
    private final List<String> stops;
    private final Consumer<String> output;
    private final StringBuilder pending = new StringBuilder();
    private final StringBuilder emitted = new StringBuilder();

    public StopStringFilter(List<String> stops, Consumer<String> output) {
        this.stops = stops;
        this.output = output;
    }

    /** Takes new text; returns true when a stop string is complete (text before it has been passed on). */
    public boolean accept(String text) {
        pending.append(text);
        int stopAt = -1;
        for (String s : stops) {
            int i = pending.indexOf(s);
            if (i >= 0 && (stopAt < 0 || i < stopAt)) {
                stopAt = i;
            }
        }
        if (stopAt >= 0) {
            emit(stopAt);
            pending.setLength(0);
            return true;
        }
        String p = pending.toString();
        int hold = 0;
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, p.length()); k > hold; k--) {
                if (p.regionMatches(p.length() - k, s, 0, k)) {
                    hold = k;
                    break;
                }
            }
        }
        emit(pending.length() - hold);
        return false;
    }

    /** Passes on what was held back; for the end of the text. */
    public void flush() {
        emit(pending.length());
    }

    private void emit(int chars) {
        if (chars > 0) {
            String s = pending.substring(0, chars);
            pending.delete(0, chars);
            emitted.append(s);
            output.accept(s);
        }
    }

    /** All text passed on so far. */
    public String text() {
        return emitted.toString();
    }
}
