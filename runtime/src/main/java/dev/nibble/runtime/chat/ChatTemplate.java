package dev.nibble.runtime.chat;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import com.hubspot.jinjava.lib.tag.Tag;
import com.hubspot.jinjava.tree.Node;
import com.hubspot.jinjava.tree.TagNode;
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
        RenderResult result = JINJA.renderForResult(jinjavaSource, context);
        for (TemplateError e : result.getErrors()) {
            if (e.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw new ChatTemplateException(describe(e));
            }
        }
        return result.getOutput();
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
        return "chat template error" + where + ": " + e.getMessage();
    }

    private static Jinjava newJinja() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PythonStringResolver());
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
                .withMaxOutputSize(256L << 20)
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
            return PythonJson.dumps(value, indent instanceof Number n ? n.intValue() : -1);
        }));
        return jinja;
    }

    /** Functions templates may call. */
    public static final class TemplateFunctions {

        private TemplateFunctions() {
        }

        /** Hugging Face's {@code raise_exception(message)}: the template refuses the conversation. */
        public static String raiseException(String message) {
            throw new ChatTemplateException("the chat template refused the conversation: " + message);
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
