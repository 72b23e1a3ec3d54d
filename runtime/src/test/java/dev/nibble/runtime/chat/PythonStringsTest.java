package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.LocalDateTime;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Expected values are what CPython 3.11 returns for the same calls. */
class PythonStringsTest {

    @Test
    void stripUsesPythonsWhitespace() {
        assertEquals("a b", PythonStrings.strip("\u00a0\u2003\t a b\u3000\u0085\n", null));
        assertEquals("\u200ba", PythonStrings.strip("\u200ba ", null), "a zero-width space is not whitespace");
        assertEquals("b", PythonStrings.strip("xxbyx", "xy"));
        assertEquals("b  ", PythonStrings.lstrip("  b  ", null));
        assertEquals("  b", PythonStrings.rstrip("  b  ", null));
    }

    @Test
    void splitWithoutSeparatorDropsEmptyParts() {
        assertEquals(List.of("a", "b", "c"), PythonStrings.split("  a \t b\n\nc ", null, -1));
        assertEquals(List.of("a", "b  c  "), PythonStrings.split("  a  b  c  ", null, 1));
        assertEquals(List.of("", "a", "", "b", ""), PythonStrings.split(",a,,b,", ",", -1));
        assertEquals(List.of("", "a,,b,"), PythonStrings.split(",a,,b,", ",", 1));
    }

    @Test
    void replaceHonoursTheCount() {
        assertEquals("x-x-a", PythonStrings.replace("a-a-a", "a", "x", 2));
        assertEquals("-a-b-", PythonStrings.replace("ab", "", "-", -1));
        assertEquals("-a-b", PythonStrings.replace("ab", "", "-", 2));
    }

    @Test
    void titleAndCapitalizeFollowPython() {
        assertEquals("They'Re Bill'S Friends", PythonStrings.title("they're bill's friends"));
        assertEquals("\u01c5emal \u00d1u", PythonStrings.title("\u01c6emal \u00f1U"));
        assertEquals("Hello world", PythonStrings.capitalize("hELLO WORLD"));
    }

    @Test
    void strftimeFollowsPython() {
        assertEquals("05 Jan 2026|Monday Mon January|01 26 14 02 03 09 PM 005 %",
                PythonDates.strftime(LocalDateTime.of(2026, 1, 5, 14, 3, 9), "%d %b %Y|%A %a %B|%m %y %H %I %M %S %p %j %%"));
    }
}
