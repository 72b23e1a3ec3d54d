package dev.nibble.runtime.chat;

import java.time.LocalDateTime;
import java.time.format.TextStyle;
import java.util.Locale;

/** Python's {@code strftime} for the directives chat templates use (dates in system prompts). */
final class PythonDates {

    private PythonDates() {
    }

    static String strftime(LocalDateTime t, String format) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 == format.length()) {
                out.append(c);
                continue;
            }
            char d = format.charAt(++i);
            out.append(switch (d) {
                case 'd' -> two(t.getDayOfMonth());
                case 'm' -> two(t.getMonthValue());
                case 'Y' -> Integer.toString(t.getYear());
                case 'y' -> two(t.getYear() % 100);
                case 'H' -> two(t.getHour());
                case 'I' -> two((t.getHour() + 11) % 12 + 1);
                case 'M' -> two(t.getMinute());
                case 'S' -> two(t.getSecond());
                case 'p' -> t.getHour() < 12 ? "AM" : "PM";
                case 'j' -> String.format(Locale.ROOT, "%03d", t.getDayOfYear());
                case 'b' -> t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH);
                case 'B' -> t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH);
                case 'a' -> t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH);
                case 'A' -> t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH);
                case '%' -> "%";
                default -> "%" + d;
            });
        }
        return out.toString();
    }

    private static String two(int v) {
        return String.format(Locale.ROOT, "%02d", v);
    }
}
