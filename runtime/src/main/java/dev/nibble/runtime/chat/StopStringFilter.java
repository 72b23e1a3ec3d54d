package dev.nibble.runtime.chat;

import java.util.List;

/**
 * Sits between the streaming decoder and the screen: holds back text that might be the start of a stop string, and
 * once a stop string appears, lets nothing from it on through.
 */
public final class StopStringFilter {

    private final List<String> stops;
    private final StringBuilder pending = new StringBuilder();
    private boolean stopped;

    public StopStringFilter(List<String> stops) {
        this.stops = stops.stream().filter(s -> !s.isEmpty()).toList();
    }

    /** Takes newly decoded text and returns what can be shown now (possibly empty). */
    public String accept(String text) {
        if (stopped) {
            return "";
        }
        pending.append(text);
        int stopAt = -1;
        for (String s : stops) {
            int i = pending.indexOf(s);
            if (i >= 0 && (stopAt < 0 || i < stopAt)) {
                stopAt = i;
            }
        }
        if (stopAt >= 0) {
            stopped = true;
            String out = pending.substring(0, stopAt);
            pending.setLength(0);
            return out;
        }
        int keep = longestSuffixThatStartsAStop();
        String out = pending.substring(0, pending.length() - keep);
        pending.delete(0, pending.length() - keep);
        return out;
    }

    /** Whether a stop string has appeared. */
    public boolean stopped() {
        return stopped;
    }

    /** Ends the stream: text held back that never became a stop string. */
    public String finish() {
        String out = stopped ? "" : pending.toString();
        pending.setLength(0);
        return out;
    }

    private int longestSuffixThatStartsAStop() {
        String p = pending.toString();
        int best = 0;
        for (String s : stops) {
            for (int len = Math.min(s.length() - 1, p.length()); len > best; len--) {
                if (p.regionMatches(p.length() - len, s, 0, len)) {
                    best = len;
                    break;
                }
            }
        }
        return best;
    }
}
