package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Hostile chat templates (issue 11 items 4 and 10, and the fuzzing section): deep nesting, huge loops, recursion and
 * very long output each give one ChatTemplateException with a one-line message, within bounded time and memory.
 */
class ChatTemplateBoundsTest {

    private static final List<ChatMessage> TURN = List.of(new ChatMessage("user", "Hi"));
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    /** Renders source and returns the refusal, checking it is one line and came within the time and allocation given. */
    private static ChatTemplateException refused(String source, double seconds, long allocatedBytes) {
        long start = System.nanoTime();
        long before = THREADS.getCurrentThreadAllocatedBytes();
        ChatTemplateException e = assertThrows(ChatTemplateException.class,
                () -> ChatTemplate.of(source, "<s>", "</s>").render(TURN, true), source);
        double took = (System.nanoTime() - start) / 1e9;
        long allocated = THREADS.getCurrentThreadAllocatedBytes() - before;
        assertTrue(!e.getMessage().contains("\n") && !e.getMessage().contains("\r"), e.getMessage());
        assertTrue(took < seconds, "took " + took + " s: " + e.getMessage());
        assertTrue(allocated < allocatedBytes, "allocated " + allocated + " bytes: " + e.getMessage());
        return e;
    }

    private static <T> T withRenderLimit(long nanos, Supplier<T> body) {
        long saved = ChatTemplate.renderNanos;
        ChatTemplate.renderNanos = nanos;
        try {
            return body.get();
        } finally {
            ChatTemplate.renderNanos = saved;
        }
    }

    @Test
    void fiveThousandNestedIfsAreOneLineNotAStackOverflow() {
        // Before: StackOverflowError, 1,000+ lines of stack trace.
        ChatTemplateException e = refused("{% if true %}".repeat(5000) + "x" + "{% endif %}".repeat(5000), 2, 64L << 20);
        assertTrue(e.getMessage().contains("nests blocks more than " + Jinja2Syntax.MAX_BLOCK_DEPTH + " deep"), e.getMessage());
    }

    @Test
    void deeplyNestedExpressionsAreOneLine() {
        // Before: 42 s, then a StackOverflowError.
        ChatTemplateException e = refused("{{ " + "(".repeat(5000) + "1" + ")".repeat(5000) + " }}", 2, 64L << 20);
        assertTrue(e.getMessage().contains("nests brackets more than " + Jinja2Syntax.MAX_BRACKET_DEPTH), e.getMessage());
    }

    @Test
    void nestingWithinTheBoundStillRenders() {
        String source = "{% if true %}".repeat(50) + "{{ messages[0].content }}" + "{% endif %}".repeat(50);
        assertEquals("Hi", ChatTemplate.of(source, "", "").render(TURN, false));
    }

    @Test
    void aBillionIterationsStopAtTheTimeLimit() {
        // Before: 22 s, then 256 MB of output.
        ChatTemplateException e = withRenderLimit(500_000_000L, () -> refused("{% for i in range(1000) %}"
                + "{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}", 3, 1L << 30));
        assertTrue(e.getMessage().contains("took more than 0.5 s to render 1 messages"), e.getMessage());
    }

    @Test
    void loopsInsideMacrosStopAtTheTimeLimitToo() {
        ChatTemplateException e = withRenderLimit(500_000_000L, () -> refused("{% macro f() %}{% for i in range(1000) %}"
                + "{{ i }}{% endfor %}{% endmacro %}{% for k in range(1000) %}{% for j in range(1000) %}{{ f()|length }}"
                + "{% endfor %}{% endfor %}", 3, 1L << 30));
        assertTrue(e.getMessage().contains("took more than"), e.getMessage());
    }

    @Test
    void outputBeyondTheBoundIsRefusedBeforeItIsBuilt() {
        // Before: each of these allocated gigabytes (OutOfMemoryError under a 1 GB heap).
        long mb = 1L << 20;
        String[] huge = {"{{ 'x'|center(1000000000) }}", "{{ 'a\\nb'|indent(1000000000) }}", "{{ '%0999999999d'|format(1) }}",
                "{{ range(999)|join(',')|replace(',', range(999)|join(','))|replace(',', range(999)|join(',')) }}",
                "{% set s = range(999)|join(',') %}{{ s.replace(',', s).replace(',', s) }}",
                "{{ range(100000)|list|tojson(indent=1000000) }}"};
        for (String source : huge) {
            ChatTemplateException e = refused(source, 2, 256 * mb);
            // Python's str.replace is a method call, whose refusal Jinjava reports as the method failing.
            assertTrue(e.getMessage().contains("more than a chat needs (at most " + ChatTemplate.MAX_OUTPUT_CHARS + ")")
                    || source.contains(".replace(") && e.getMessage().contains("replace"), source + ": " + e.getMessage());
        }
    }

    @Test
    void aTemplateBeyondTheSizeBoundIsRefused() {
        ChatTemplateException e = assertThrows(ChatTemplateException.class,
                () -> ChatTemplate.of("x".repeat(ChatTemplate.MAX_SOURCE_CHARS + 1), "", ""));
        assertTrue(e.getMessage().contains((ChatTemplate.MAX_SOURCE_CHARS + 1) + " characters"), e.getMessage());
    }

    @Test
    void manyUnclosedTagOpeningsAreScannedInLinearTime() {
        // Before: 20,000 "{{{{{{{{" took two minutes in the tag rewriting (a quadratic regular expression search).
        String source = "{{{{{{{{".repeat(20_000);
        long start = System.nanoTime();
        try {
            ChatTemplate.of(source, "", "").render(TURN, false);
        } catch (ChatTemplateException e) {
            assertTrue(!e.getMessage().contains("\n"), e.getMessage());
        }
        assertTrue(System.nanoTime() - start < 3_000_000_000L, "took " + (System.nanoTime() - start) / 1e9 + " s");
    }

    @Test
    void raisedMessagesAndErrorsAreOneLine() {
        ChatTemplateException e = refused("{{ raise_exception('first\\nsecond\\rthird') }}", 2, 64L << 20);
        assertTrue(e.getMessage().contains("first\\nsecond\\rthird"), e.getMessage());
    }

    @Test
    void filesAndRegularExpressionsAreNotReachable() {
        for (String source : List.of("{% include 'META-INF/MANIFEST.MF' %}", "{{ 'aaaa'|regex_replace('(a+)+b', 'x') }}",
                "{% import 'x.jinja' as x %}")) {
            String out;
            try {
                out = ChatTemplate.of(source, "", "").render(TURN, false);
            } catch (ChatTemplateException e) {
                assertTrue(!e.getMessage().contains("\n"), e.getMessage());
                continue;
            }
            assertTrue(!out.contains("Manifest") && !out.contains("xxxx"), source + " rendered " + out);
        }
    }
}
