package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class StopStringFilterTest {

    @Test
    void textBeforeAStopStringSplitAcrossPiecesIsPassedOnWithoutTheStopString() {
        List<String> seen = new ArrayList<>();
        StopStringFilter f = new StopStringFilter(List.of("\nUser:"), seen::add);
        assertFalse(f.accept("Hello"));
        assertFalse(f.accept(" there\nUs"));
        assertEquals("Hello there", String.join("", seen), "the possible start of the stop string is held back");
        assertTrue(f.accept("er: more"));
        assertEquals("Hello there", String.join("", seen));
        assertEquals("Hello there", f.text());
    }

    @Test
    void heldBackTextThatTurnsOutNotToBeAStopStringComesOut() {
        List<String> seen = new ArrayList<>();
        StopStringFilter f = new StopStringFilter(List.of("END"), seen::add);
        assertFalse(f.accept("the EN"));
        assertEquals("the ", String.join("", seen));
        assertFalse(f.accept("ter"));
        assertEquals("the ENter", String.join("", seen));
        assertFalse(f.accept(" E"));
        f.flush();
        assertEquals("the ENter E", String.join("", seen), "flush passes on what was held back at the end");
    }

    @Test
    void theEarliestOfSeveralStopStringsWins() {
        List<String> seen = new ArrayList<>();
        StopStringFilter f = new StopStringFilter(List.of("b c", "a"), seen::add);
        assertTrue(f.accept("xx b c a"));
        assertEquals("xx ", String.join("", seen));
    }

    @Test
    void withoutStopStringsEverythingPassesAtOnce() {
        List<String> seen = new ArrayList<>();
        StopStringFilter f = new StopStringFilter(List.of(), seen::add);
        assertFalse(f.accept("abc"));
        assertFalse(f.accept("def"));
        assertEquals(List.of("abc", "def"), seen);
    }
}
