package dev.nibble.cli.openai;

import com.fasterxml.jackson.databind.JsonNode;
import dev.nibble.runtime.chat.ChatMessage;
import java.util.ArrayList;
import java.util.List;

/**
 * The body of an OpenAI completion request, as {@code nibble batch} (OpenAI batch lines) and {@code nibble serve}
 * read it: {@code /v1/chat/completions} ({@code messages}) or {@code /v1/completions} ({@code prompt}), with
 * {@code max_completion_tokens} or {@code max_tokens}, the sampling fields (see {@link Sampling}), {@code stop} and
 * {@code n} (1 only). Fields nibble does not know are ignored, as OpenAI-compatible servers do.
 *
 * @param chat      whether it is a conversation to answer ({@code messages}) rather than text to continue
 * @param prompt    the text to continue; null for a chat request
 * @param messages  the conversation, ending with the user's message; null for a completion request
 * @param maxTokens the token limit given, or null
 * @param sampling  the sampling fields given
 * @param stop      stop strings given
 */
public record OpenAiRequest(boolean chat, String prompt, List<ChatMessage> messages, Integer maxTokens,
                            Sampling sampling, List<String> stop) {

    public static final String CHAT_URL = "/v1/chat/completions";
    public static final String COMPLETIONS_URL = "/v1/completions";

    /**
     * Whether and how a request streams: {@code stream} and {@code stream_options.include_usage} (a last chunk
     * with the token counts).
     */
    public record Streaming(boolean stream, boolean includeUsage) {
    }

    /** Reads {@code body}, sent to {@code url} ({@link #CHAT_URL} or {@link #COMPLETIONS_URL}). */
    public static OpenAiRequest parse(String url, JsonNode body) throws InvalidRequestException {
        if (body == null || !body.isObject()) {
            throw new InvalidRequestException("no \"body\" object");
        }
        JsonNode n = body.get("n");
        if (n != null && !n.isNull() && n.asInt(-1) != 1) {
            throw new InvalidRequestException("n must be 1 (one answer per request)", "n");
        }
        Integer max = integer(body, "max_completion_tokens");
        if (max == null) {
            max = integer(body, "max_tokens");
        }
        return switch (url) {
            case CHAT_URL -> {
                if (body.get("messages") == null) {
                    throw new InvalidRequestException("a chat completion body needs \"messages\"", "messages");
                }
                yield new OpenAiRequest(true, null, messages(body.get("messages")), max, sampling(body),
                        stops(body.get("stop")));
            }
            case COMPLETIONS_URL -> {
                JsonNode prompt = body.get("prompt");
                if (prompt == null) {
                    throw new InvalidRequestException("a completion body needs \"prompt\"", "prompt");
                }
                yield new OpenAiRequest(false, prompt(prompt), null, max, sampling(body), stops(body.get("stop")));
            }
            default -> throw new InvalidRequestException("url must be " + CHAT_URL + " or " + COMPLETIONS_URL
                    + ", is \"" + url + "\"");
        };
    }

    /** {@code stream} and {@code stream_options} of a body (both optional). */
    public static Streaming streaming(JsonNode body) throws InvalidRequestException {
        boolean stream = bool(body, "stream");
        JsonNode options = body.get("stream_options");
        if (options == null || options.isNull()) {
            return new Streaming(stream, false);
        }
        if (!options.isObject()) {
            throw new InvalidRequestException("\"stream_options\" must be an object", "stream_options");
        }
        return new Streaming(stream, bool(options, "include_usage"));
    }

    /** A completion's prompt: a string, or an array holding one string. */
    private static String prompt(JsonNode node) throws InvalidRequestException {
        if (node.isArray() && node.size() == 1 && node.get(0).isTextual()) {
            return node.get(0).asText();
        }
        if (node.isArray() && node.size() > 1) {
            throw new InvalidRequestException("\"prompt\" must be one string (one prompt per request)", "prompt");
        }
        return text(node, "prompt");
    }

    /**
     * A conversation: a non-empty array of {@code {"role", "content"}} ending with the user's message; a content may
     * be a string or an array of text parts ({@code {"type": "text", "text": ...}}); OpenAI's {@code developer} role
     * is a system message.
     */
    public static List<ChatMessage> messages(JsonNode node) throws InvalidRequestException {
        if (!node.isArray() || node.isEmpty()) {
            throw new InvalidRequestException("\"messages\" must be a non-empty array of {\"role\", \"content\"}",
                    "messages");
        }
        List<ChatMessage> out = new ArrayList<>();
        for (JsonNode m : node) {
            JsonNode role = m.get("role");
            String content = content(m.get("content"));
            if (role == null || !role.isTextual() || content == null) {
                throw new InvalidRequestException("each message needs a string \"role\" and a string \"content\"",
                        "messages");
            }
            String r = role.asText().equals("developer") ? ChatMessage.SYSTEM : role.asText();
            out.add(new ChatMessage(r, content));
        }
        if (!out.getLast().role().equals(ChatMessage.USER)) {
            throw new InvalidRequestException("the last message must be the user's, to be answered", "messages");
        }
        return out;
    }

    /** A message's text: a string, or the text parts of an array joined; null when it is neither. */
    private static String content(JsonNode content) {
        if (content == null) {
            return null;
        }
        if (content.isTextual()) {
            return content.asText();
        }
        if (!content.isArray()) {
            return null;
        }
        StringBuilder text = new StringBuilder();
        for (JsonNode part : content) {
            if (!"text".equals(part.path("type").asText()) || !part.path("text").isTextual()) {
                return null;
            }
            text.append(part.get("text").asText());
        }
        return text.toString();
    }

    /** The sampling fields of {@code o}; {@code repeat_penalty} is a synonym of {@code repetition_penalty}. */
    public static Sampling sampling(JsonNode o) throws InvalidRequestException {
        Float rp = number(o, "repetition_penalty");
        return new Sampling(number(o, "temperature"), integer(o, "top_k"), number(o, "top_p"), number(o, "min_p"),
                rp != null ? rp : number(o, "repeat_penalty"), number(o, "frequency_penalty"),
                number(o, "presence_penalty"), longValue(o, "seed"));
    }

    /** {@code stop}: absent, null, a string or an array of strings, none empty. */
    public static List<String> stops(JsonNode node) throws InvalidRequestException {
        if (node == null || node.isNull()) {
            return List.of();
        }
        if (node.isTextual()) {
            return List.of(nonEmpty(node.asText()));
        }
        if (node.isArray()) {
            List<String> out = new ArrayList<>();
            for (JsonNode s : node) {
                if (!s.isTextual()) {
                    throw new InvalidRequestException("\"stop\" must be a string or an array of strings", "stop");
                }
                out.add(nonEmpty(s.asText()));
            }
            return out;
        }
        throw new InvalidRequestException("\"stop\" must be a string or an array of strings", "stop");
    }

    private static String nonEmpty(String stop) throws InvalidRequestException {
        if (stop.isEmpty()) {
            throw new InvalidRequestException("a stop string must not be empty", "stop");
        }
        return stop;
    }

    /** A string field's value. */
    public static String text(JsonNode node, String field) throws InvalidRequestException {
        if (!node.isTextual()) {
            throw new InvalidRequestException("\"" + field + "\" must be a string", field);
        }
        return node.asText();
    }

    /** An integer field of {@code o} (an int), or null when absent or null. */
    public static Integer integer(JsonNode o, String field) throws InvalidRequestException {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isIntegralNumber() || !n.canConvertToInt()) {
            throw new InvalidRequestException("\"" + field + "\" must be an integer", field);
        }
        return n.intValue();
    }

    private static Long longValue(JsonNode o, String field) throws InvalidRequestException {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isIntegralNumber() || !n.canConvertToLong()) {
            throw new InvalidRequestException("\"" + field + "\" must be an integer", field);
        }
        return n.longValue();
    }

    private static Float number(JsonNode o, String field) throws InvalidRequestException {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isNumber()) {
            throw new InvalidRequestException("\"" + field + "\" must be a number", field);
        }
        return n.floatValue();
    }

    private static boolean bool(JsonNode o, String field) throws InvalidRequestException {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return false;
        }
        if (!n.isBoolean()) {
            throw new InvalidRequestException("\"" + field + "\" must be true or false", field);
        }
        return n.booleanValue();
    }
}
