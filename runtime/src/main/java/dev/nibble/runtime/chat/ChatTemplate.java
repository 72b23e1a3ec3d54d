package dev.nibble.runtime.chat;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaProcessors;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import com.hubspot.jinjava.lib.tag.Tag;
import com.hubspot.jinjava.tree.Node;
import com.hubspot.jinjava.tree.TagNode;
import dev.nibble.formats.FormatException;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import jinjava.javax.el.CompositeELResolver;

/**
 * A Jinja chat template (a model's {@code tokenizer.chat_template} or a built-in one), rendered the way Hugging Face's
 * {@code apply_chat_template} renders it: blocks trimmed and left-stripped, the template's last newline dropped,
 * {@code raise_exception}, {@code tojson}, and Python string methods available.
 */
public final class ChatTemplate {

    /**
     * Bounds on what a template may make the renderer do, whoever wrote it: its size (real templates are a few KB),
     * how deep it nests (see {@link Jinja2Syntax#MAX_BLOCK_DEPTH}), the text it renders and any string or list it
     * builds, and the time one rendering takes (a template that loops a billion times renders in well under a
     * millisecond per message otherwise). Each is refused with a one-line error.
     */
    static final int MAX_SOURCE_CHARS = 1 << 20;
    static final long MAX_OUTPUT_CHARS = 32L << 20;
    static final int MAX_COLLECTION_SIZE = 1 << 20;
    static final long RENDER_NANOS = 5_000_000_000L;
    /** The time one rendering may take before the per-message allowance: {@link #RENDER_NANOS}; tests shorten it. */
    static volatile long renderNanos = RENDER_NANOS;
    static final long RENDER_NANOS_PER_MESSAGE = 100_000L;
    /** The longest part of a template's own error message (or raise_exception text) kept in an exception. */
    private static final int MAX_MESSAGE = 500;

    /** When the rendering on this thread must stop (System.nanoTime), checked before every node. */
    private static final ThreadLocal<long[]> DEADLINE = ThreadLocal.withInitial(() -> new long[] {Long.MAX_VALUE});

    private static final Jinjava JINJA = newJinja();

    private final String source;
    private final String jinjavaSource;
    private final String bosToken;
    private final String eosToken;

    private ChatTemplate(String source, String bosToken, String eosToken) {
        // Jinja's lexer turns every line ending into \n and, without keep_trailing_newline, drops the last one.
        String normalized = source.replace("\r\n", "\n").replace('\r', '\n');
        this.source = normalized.endsWith("\n") ? normalized.substring(0, normalized.length() - 1) : normalized;
        this.jinjavaSource = Jinja2Syntax.rewrite(this.source);
        this.bosToken = bosToken;
        this.eosToken = eosToken;
    }

    /**
     * A template from its Jinja source.
     *
     * @param bosToken the text of the BOS token ({@code bos_token} in the template), or "" when the model has none
     * @param eosToken the text of the EOS token ({@code eos_token})
     */
    public static ChatTemplate of(String source, String bosToken, String eosToken) {
        if (source.isBlank()) {
            throw new ChatTemplateException("the chat template is empty");
        }
        if (source.length() > MAX_SOURCE_CHARS) {
            throw new ChatTemplateException("the chat template is " + source.length() + " characters, more than a template"
                    + " needs (at most " + MAX_SOURCE_CHARS + " are accepted)");
        }
        Jinja2Syntax.checkNesting(source);
        return new ChatTemplate(source, bosToken, eosToken);
    }

    /** The Jinja source, as rendered (line endings normalized, last newline dropped). */
    public String source() {
        return source;
    }

    public String bosToken() {
        return bosToken;
    }

    public String eosToken() {
        return eosToken;
    }

    /**
     * Renders the conversation.
     *
     * @param addGenerationPrompt end with the start of an assistant turn, so that the model writes the answer
     * @throws ChatTemplateException when the template fails or calls {@code raise_exception}
     */
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt) {
        List<Map<String, Object>> list = new ArrayList<>(messages.size());
        for (ChatMessage m : messages) {
            Map<String, Object> map = new LinkedHashMap<>();
            map.put("role", m.role());
            map.put("content", m.content());
            list.add(map);
        }
        Map<String, Object> context = new HashMap<>();
        context.put("messages", list);
        context.put("bos_token", bosToken);
        context.put("eos_token", eosToken);
        context.put("add_generation_prompt", addGenerationPrompt);
        // Templates test "strftime_now is defined" before calling it (Llama 3.2); the call itself is a function.
        context.put("strftime_now", true);
        long limit = renderNanos + RENDER_NANOS_PER_MESSAGE * messages.size();
        long[] deadline = DEADLINE.get();
        long outer = deadline[0];
        deadline[0] = Math.min(outer, System.nanoTime() + limit);
        RenderResult result;
        try {
            result = JINJA.renderForResult(jinjavaSource, context);
        } catch (StackOverflowError e) {
            throw new ChatTemplateException("the chat template nests too deeply to render (the renderer ran out of stack)");
        } catch (RenderTimeout e) {
            throw new ChatTemplateException(timeout(limit, messages.size()));
        } catch (ChatTemplateException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new ChatTemplateException("chat template error: " + FormatException.oneLine(String.valueOf(e), MAX_MESSAGE));
        } finally {
            deadline[0] = outer;
        }
        for (TemplateError e : result.getErrors()) {
            if (e.getSeverity() == TemplateError.ErrorType.FATAL) {
                for (Throwable c = e.getException(); c != null; c = c.getCause()) {
                    if (c instanceof RenderTimeout || c instanceof StackOverflowError) {
                        throw new ChatTemplateException(c instanceof RenderTimeout ? timeout(limit, messages.size())
                                : "the chat template nests too deeply to render (the renderer ran out of stack)");
                    }
                }
                throw new ChatTemplateException(describe(e));
            }
        }
        return result.getOutput();
    }

    private static String timeout(long limitNanos, int messages) {
        return String.format(java.util.Locale.ROOT, "the chat template took more than %.1f s to render %d messages (the"
                + " limit); it loops too much", limitNanos / 1e9, messages);
    }

    private static String describe(TemplateError e) {
        Throwable cause = e.getException();
        while (cause != null) {
            if (cause instanceof ChatTemplateException raised) {
                return raised.getMessage();
            }
            cause = cause.getCause();
        }
        String where = e.getLineno() > 0 ? " (template line " + e.getLineno() + ")" : "";
        return "chat template error" + where + ": " + FormatException.oneLine(e.getMessage(), MAX_MESSAGE);
    }

    private static Jinjava newJinja() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new SizeCheckingResolver(new PythonStringResolver()));
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        // Each override makes Jinjava behave as Jinja2 does where the two differ.
        LegacyOverrides jinja2 = LegacyOverrides.newBuilder()
                .withEvaluateMapKeys(true)
                .withIterateOverMapKeys(true)
                .withUsePyishObjectMapper(true)
                .withUseNaturalOperatorPrecedence(true)
                .withParseWhitespaceControlStrictly(true)
                .withUseTrimmingForNotesAndExpressions(true)
                .withKeepNullableLoopValues(true)
                .build();
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                // lstrip_blocks is done by Jinja2Syntax.
                .withLstripBlocks(false)
                .withLegacyOverrides(jinja2)
                .withElResolver(resolver)
                // Message text must come out verbatim, never be read as template code.
                .withNestedInterpretationEnabled(false)
                .withMaxOutputSize(MAX_OUTPUT_CHARS)
                .withMaxStringLength(MAX_OUTPUT_CHARS)
                .withMaxListSize(MAX_COLLECTION_SIZE)
                .withMaxMapSize(MAX_COLLECTION_SIZE)
                .withRangeLimit(MAX_COLLECTION_SIZE)
                // Not Jinja2's, never in chat templates, and unbounded in time or memory (a regular expression, a
                // template or YAML from data) or reading files (the classpath): refused as unknown.
                .withDisabled(Map.of(
                        Context.Library.FILTER, java.util.Set.of("regex_replace", "render", "fromyaml", "toyaml"),
                        Context.Library.TAG, java.util.Set.of("include", "import", "from", "extends")))
                .withProcessors(JinjavaProcessors.newBuilder().withNodePreProcessor((node, interpreter) -> {
                    if (System.nanoTime() - DEADLINE.get()[0] > 0) {
                        throw new RenderTimeout();
                    }
                }).build())
                .build();
        Jinjava jinja = new Jinjava(config);
        jinja.registerFunction(new ELFunctionDefinition("", "raise_exception", TemplateFunctions.class,
                "raiseException", String.class));
        jinja.registerFunction(new ELFunctionDefinition("", "strftime_now", TemplateFunctions.class,
                "strftimeNow", String.class));
        jinja.registerTag(new GenerationTag());
        jinja.registerFilter(new PythonFilter("trim", (value, args, kwargs) -> PythonStrings.strip(String.valueOf(value), null)));
        jinja.registerFilter(new PythonFilter("tojson", (value, args, kwargs) -> {
            Object indent = kwargs.getOrDefault("indent", args.length > 0 ? args[0] : null);
            int spaces = indent instanceof Number n ? (int) Math.max(-1, Math.min(n.longValue(), Integer.MAX_VALUE)) : -1;
            checkSize("tojson", jsonSize(value, Math.max(spaces, 0), 0, 0));
            return PythonJson.dumps(value, spaces);
        }));
        // Filters whose output can be far longer than their input: the size is checked before they run.
        Context filters = jinja.getGlobalContext();
        jinja.registerFilter(new CheckedFilter(filters.getFilter("center"),
                (value, args) -> Math.max(length(value), number(args, 0, 80))));
        jinja.registerFilter(new CheckedFilter(filters.getFilter("indent"),
                (value, args) -> length(value) + (1 + lines(value)) * Math.max(0, number(args, 0, 4))));
        jinja.registerFilter(new CheckedFilter(filters.getFilter("replace"),
                (value, args) -> args.length < 2 ? 0 : replacedLength(String.valueOf(value), String.valueOf(args[0]),
                        String.valueOf(args[1]), number(args, 2, -1))));
        jinja.registerFilter(new CheckedFilter(filters.getFilter("format"),
                (value, args) -> formatLength(String.valueOf(value), args)));
        return jinja;
    }

    private static void checkSize(String what, long chars) {
        if (chars > MAX_OUTPUT_CHARS) {
            throw new ChatTemplateException("the chat template's " + what + " would make " + (chars >= Long.MAX_VALUE / 2
                    ? "a string of billions of" : "a string of " + chars) + " characters, more than a chat needs (at most "
                    + MAX_OUTPUT_CHARS + ")");
        }
    }

    private static long lines(Object value) {
        return value == null ? 0 : String.valueOf(value).chars().filter(c -> c == '\n').count();
    }

    private static long length(Object value) {
        return value == null ? 0 : String.valueOf(value).length();
    }

    /** Argument i as a whole number, or fallback when absent or not a number. */
    private static long number(Object[] args, int i, long fallback) {
        if (i >= args.length || args[i] == null) {
            return fallback;
        }
        if (args[i] instanceof Number n) {
            return n.longValue();
        }
        try {
            return (long) Double.parseDouble(String.valueOf(args[i]).strip());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    /** The length of Python's {@code s.replace(old, new, count)}, found without building it (saturating). */
    static long replacedLength(String s, String old, String replacement, long count) {
        long occurrences;
        if (old.isEmpty()) {
            occurrences = s.length() + 1L;
        } else {
            occurrences = 0;
            for (int i = s.indexOf(old); i >= 0; i = s.indexOf(old, i + old.length())) {
                occurrences++;
            }
        }
        if (count >= 0) {
            occurrences = Math.min(occurrences, count);
        }
        return s.length() + occurrences * Math.max(0, replacement.length() - old.length());
    }

    /** An upper bound on the length of a printf-style format's output: widths and precisions count, plus the arguments. */
    private static long formatLength(String format, Object[] args) {
        long total = format.length();
        for (Object a : args) {
            total += length(a);
        }
        for (int i = format.indexOf('%'); i >= 0 && i + 1 < format.length(); i = format.indexOf('%', i + 1)) {
            int j = i + 1;
            long number = 0;
            while (j < format.length() && "-#+ 0,(.$<123456789".indexOf(format.charAt(j)) >= 0
                    || j < format.length() && Character.isDigit(format.charAt(j))) {
                char c = format.charAt(j);
                number = Character.isDigit(c) ? Math.min(number * 10 + (c - '0'), Integer.MAX_VALUE) : 0;
                total += number;
                j++;
            }
        }
        return total;
    }

    /** An upper bound on the length of {@link PythonJson#dumps} of value; stops counting once past the limit. */
    private static long jsonSize(Object value, long indent, int depth, long sofar) {
        if (sofar > MAX_OUTPUT_CHARS) {
            return sofar;
        }
        if (depth > Jinja2Syntax.MAX_BLOCK_DEPTH * 10) {
            throw new ChatTemplateException("the chat template's tojson value nests more than "
                    + Jinja2Syntax.MAX_BLOCK_DEPTH * 10 + " deep (or contains itself)");
        }
        long line = 2 + indent * (depth + 1);
        switch (value) {
            case Map<?, ?> m -> {
                long total = sofar + 2 + line;
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    total = jsonSize(e.getValue(), indent, depth + 1, total + line + 4 + 6L * length(e.getKey()));
                    if (total > MAX_OUTPUT_CHARS) {
                        return total;
                    }
                }
                return total;
            }
            case java.util.Collection<?> c -> {
                long total = sofar + 2 + line;
                for (Object item : c) {
                    total = jsonSize(item, indent, depth + 1, total + line);
                    if (total > MAX_OUTPUT_CHARS) {
                        return total;
                    }
                }
                return total;
            }
            case null -> {
                return sofar + 4;
            }
            default -> {
                // A control character becomes a six-character escape.
                return sofar + 2 + 6L * length(value);
            }
        }
    }

    /** How long a filter's output can be for a value and arguments. */
    private interface SizeBound {
        long chars(Object value, Object[] args);
    }

    /** Jinjava's own filter, refused when its output would exceed {@link #MAX_OUTPUT_CHARS}. */
    private record CheckedFilter(Filter filter, SizeBound bound) implements Filter {

        @Override
        public String getName() {
            return filter.getName();
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            checkSize(getName(), bound.chars(var, args));
            return filter.filter(var, interpreter, args);
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            Object[] all = args;
            if (kwargs.containsKey("width") && args.length == 0) {
                all = new Object[] {kwargs.get("width")};
            }
            checkSize(getName(), bound.chars(var, all));
            return filter.filter(var, interpreter, args, kwargs);
        }
    }

    /**
     * The Python string methods, with the two whose result can be far longer than their input checked first:
     * {@code replace} and {@code join}.
     */
    private static final class SizeCheckingResolver extends jinjava.javax.el.ELResolver {
        private final jinjava.javax.el.ELResolver strings;

        SizeCheckingResolver(jinjava.javax.el.ELResolver strings) {
            this.strings = strings;
        }

        @Override
        public Object invoke(jinjava.javax.el.ELContext context, Object base, Object method, Class<?>[] paramTypes,
                             Object[] params) {
            if (base instanceof String s && params != null) {
                if ("replace".equals(method) && params.length >= 2) {
                    checkSize("replace()", replacedLength(s, String.valueOf(params[0]), String.valueOf(params[1]),
                            params.length > 2 && params[2] instanceof Number n ? n.longValue() : -1));
                } else if ("join".equals(method) && params.length >= 1 && params[0] instanceof Iterable<?> items) {
                    long total = 0;
                    for (Object item : items) {
                        total += s.length() + length(item);
                        if (total > MAX_OUTPUT_CHARS) {
                            break;
                        }
                    }
                    checkSize("join()", total);
                }
            }
            return strings.invoke(context, base, method, paramTypes, params);
        }

        @Override
        public Object getValue(jinjava.javax.el.ELContext context, Object base, Object property) {
            return strings.getValue(context, base, property);
        }

        @Override
        public Class<?> getType(jinjava.javax.el.ELContext context, Object base, Object property) {
            return strings.getType(context, base, property);
        }

        @Override
        public void setValue(jinjava.javax.el.ELContext context, Object base, Object property, Object value) {
            strings.setValue(context, base, property, value);
        }

        @Override
        public boolean isReadOnly(jinjava.javax.el.ELContext context, Object base, Object property) {
            return strings.isReadOnly(context, base, property);
        }

        @Override
        public java.util.Iterator<java.beans.FeatureDescriptor> getFeatureDescriptors(jinjava.javax.el.ELContext context,
                                                                                       Object base) {
            return strings.getFeatureDescriptors(context, base);
        }

        @Override
        public Class<?> getCommonPropertyType(jinjava.javax.el.ELContext context, Object base) {
            return strings.getCommonPropertyType(context, base);
        }
    }

    /**
     * Thrown before a node renders once the rendering is past its deadline. An Error, so that Jinjava, which turns
     * exceptions inside a tag into template errors and carries on with the next node, lets it through at once.
     */
    private static final class RenderTimeout extends Error {
        RenderTimeout() {
            super("chat template rendering is past its deadline", null, false, false);
        }
    }

    /** Functions templates may call. */
    public static final class TemplateFunctions {

        private TemplateFunctions() {
        }

        /** Hugging Face's {@code raise_exception(message)}: the template refuses the conversation. */
        public static String raiseException(String message) {
            throw new ChatTemplateException("the chat template refused the conversation: "
                    + FormatException.oneLine(message, MAX_MESSAGE));
        }

        /** Hugging Face's {@code strftime_now(format)}: the local date and time in a Python strftime format. */
        public static String strftimeNow(String format) {
            return PythonDates.strftime(LocalDateTime.now(), format);
        }
    }

    /**
     * Hugging Face's {@code {% generation %}...{% endgeneration %}}, which marks the assistant's text for training masks;
     * for rendering it is just its body.
     */
    private static final class GenerationTag implements Tag {

        @Override
        public String getName() {
            return "generation";
        }

        @Override
        public String getEndTagName() {
            return "endgeneration";
        }

        @Override
        public String interpret(TagNode tagNode, JinjavaInterpreter interpreter) {
            StringBuilder out = new StringBuilder();
            for (Node child : tagNode.getChildren()) {
                out.append(child.render(interpreter).getValue());
            }
            return out.toString();
        }
    }

    private interface FilterBody {
        Object apply(Object value, Object[] args, Map<String, Object> kwargs);
    }

    /** A filter with Jinja2's (Python's) semantics where Jinjava's own differs. */
    private record PythonFilter(String name, FilterBody body) implements Filter {

        @Override
        public String getName() {
            return name;
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return body.apply(var, args, Map.of());
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            return body.apply(var, args, kwargs);
        }
    }
}
