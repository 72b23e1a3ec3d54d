package dev.nibble.cli.batch;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatMessage;
import java.util.ArrayList;
import java.util.List;

/**
 * One line of a batch input file, in nibble's own form ({@code {"id", "prompt" | "messages", "max_tokens", ...}}) or
 * in the OpenAI batch form ({@code {"custom_id", "method": "POST", "url", "body": {...}}}), or why it cannot be run.
 *
 * @param line      1-based line number in the input
 * @param id        the request's id as written ({@code id}, or {@code custom_id}); null when the line has none
 * @param openAi    whether the line is in the OpenAI batch form (and is answered in it)
 * @param chat      whether it is a conversation to answer (messages, or /v1/chat/completions) rather than text to continue
 * @param prompt    the text to continue, or the user's message when the run's --chat applies; null with messages
 * @param messages  the conversation, for chat requests given as messages
 * @param maxTokens the token limit given, or null
 * @param sampling  the sampling fields given (each null when absent)
 * @param stop      stop strings given
 * @param error     why the line cannot run, or null
 */
record BatchRequest(int line, JsonNode id, boolean openAi, boolean chat, String prompt, List<ChatMessage> messages,
                    Integer maxTokens, Sampling sampling, List<String> stop, String error) {

    static final String CHAT_URL = "/v1/chat/completions";
    static final String COMPLETIONS_URL = "/v1/completions";

    /** Sampling fields of one request; null where the run's defaults apply. */
    record Sampling(Float temperature, Integer topK, Float topP, Float minP, Float repeatPenalty, Long seed) {

        SamplerSettings over(SamplerSettings d) {
            return new SamplerSettings(temperature != null ? temperature : d.temperature(),
                    topK != null ? topK : d.topK(), topP != null ? topP : d.topP(), minP != null ? minP : d.minP(),
                    repeatPenalty != null ? repeatPenalty : d.repeatPenalty(), d.frequencyPenalty(),
                    d.presencePenalty(), seed != null ? seed : d.seed());
        }
    }

    /** The key that makes ids unique and lets a rerun find finished requests: the id's JSON text, or the line. */
    String key() {
        return keyOf(id, line);
    }

    static String keyOf(JsonNode id, int line) {
        return id != null && !id.isNull() ? id.toString() : "line " + line;
    }

    /** A line that cannot run, answered with an error result. */
    static BatchRequest invalid(int line, JsonNode id, boolean openAi, String why) {
        return new BatchRequest(line, id, openAi, false, null, null, null, null, List.of(), "line " + line + ": " + why);
    }

    /** Reads line {@code number} ({@code text}); never throws: what is wrong becomes the request's error. */
    static BatchRequest parse(ObjectMapper json, int number, String text) {
        JsonNode root;
        try {
            root = json.readTree(text);
        } catch (JsonProcessingException e) {
            return invalid(number, null, false, "not valid JSON (" + e.getOriginalMessage() + ")");
        }
        if (root == null || !root.isObject()) {
            return invalid(number, null, false, "not a JSON object");
        }
        boolean openAi = root.has("custom_id");
        JsonNode id = openAi ? root.get("custom_id") : root.get("id");
        try {
            if (id == null || id.isNull() || !(id.isTextual() || id.isIntegralNumber())) {
                throw new Invalid(openAi ? "custom_id must be a string" : "no \"id\" (a string or an integer) to name the result");
            }
            return openAi ? openAi(number, id, root) : own(number, id, root);
        } catch (Invalid e) {
            return invalid(number, id != null && (id.isTextual() || id.isIntegralNumber()) ? id : null, openAi,
                    e.getMessage());
        }
    }

    private static BatchRequest own(int number, JsonNode id, JsonNode root) throws Invalid {
        JsonNode prompt = root.get("prompt");
        JsonNode messages = root.get("messages");
        if ((prompt == null) == (messages == null)) {
            throw new Invalid("give exactly one of \"prompt\" and \"messages\"");
        }
        return new BatchRequest(number, id, false, messages != null, prompt == null ? null : text(prompt, "prompt"),
                messages == null ? null : messages(messages), integer(root, "max_tokens"), sampling(root),
                stops(root.get("stop")), null);
    }

    private static BatchRequest openAi(int number, JsonNode id, JsonNode root) throws Invalid {
        JsonNode method = root.get("method");
        if (method != null && !"POST".equals(method.asText())) {
            throw new Invalid("method must be POST");
        }
        String url = root.path("url").asText("");
        JsonNode body = root.get("body");
        if (body == null || !body.isObject()) {
            throw new Invalid("no \"body\" object");
        }
        if (body.has("n") && body.get("n").asInt(-1) != 1) {
            throw new Invalid("n must be 1 (one answer per request)");
        }
        Integer max = integer(body, "max_completion_tokens");
        if (max == null) {
            max = integer(body, "max_tokens");
        }
        return switch (url) {
            case CHAT_URL -> {
                if (body.get("messages") == null) {
                    throw new Invalid("a chat completion body needs \"messages\"");
                }
                yield new BatchRequest(number, id, true, true, null, messages(body.get("messages")), max,
                        sampling(body), stops(body.get("stop")), null);
            }
            case COMPLETIONS_URL -> {
                JsonNode prompt = body.get("prompt");
                if (prompt == null) {
                    throw new Invalid("a completion body needs \"prompt\"");
                }
                yield new BatchRequest(number, id, true, false, text(prompt, "prompt"), null, max, sampling(body),
                        stops(body.get("stop")), null);
            }
            default -> throw new Invalid("url must be " + CHAT_URL + " or " + COMPLETIONS_URL + ", is \"" + url + "\"");
        };
    }

    private static List<ChatMessage> messages(JsonNode node) throws Invalid {
        if (!node.isArray() || node.isEmpty()) {
            throw new Invalid("\"messages\" must be a non-empty array of {\"role\", \"content\"}");
        }
        List<ChatMessage> out = new ArrayList<>();
        for (JsonNode m : node) {
            JsonNode role = m.get("role");
            JsonNode content = m.get("content");
            if (role == null || !role.isTextual() || content == null || !content.isTextual()) {
                throw new Invalid("each message needs a string \"role\" and a string \"content\"");
            }
            out.add(new ChatMessage(role.asText(), content.asText()));
        }
        if (!out.getLast().role().equals(ChatMessage.USER)) {
            throw new Invalid("the last message must be the user's, to be answered");
        }
        return out;
    }

    private static Sampling sampling(JsonNode o) throws Invalid {
        Float rp = number(o, "repetition_penalty");
        return new Sampling(number(o, "temperature"), integer(o, "top_k"), number(o, "top_p"), number(o, "min_p"),
                rp != null ? rp : number(o, "repeat_penalty"), longValue(o, "seed"));
    }

    private static List<String> stops(JsonNode node) throws Invalid {
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
                    throw new Invalid("\"stop\" must be a string or an array of strings");
                }
                out.add(nonEmpty(s.asText()));
            }
            return out;
        }
        throw new Invalid("\"stop\" must be a string or an array of strings");
    }

    private static String nonEmpty(String stop) throws Invalid {
        if (stop.isEmpty()) {
            throw new Invalid("a stop string must not be empty");
        }
        return stop;
    }

    private static String text(JsonNode node, String field) throws Invalid {
        if (!node.isTextual()) {
            throw new Invalid("\"" + field + "\" must be a string");
        }
        return node.asText();
    }

    private static Integer integer(JsonNode o, String field) throws Invalid {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isIntegralNumber() || !n.canConvertToInt()) {
            throw new Invalid("\"" + field + "\" must be an integer");
        }
        return n.intValue();
    }

    private static Long longValue(JsonNode o, String field) throws Invalid {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isIntegralNumber() || !n.canConvertToLong()) {
            throw new Invalid("\"" + field + "\" must be an integer");
        }
        return n.longValue();
    }

    private static Float number(JsonNode o, String field) throws Invalid {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isNumber()) {
            throw new Invalid("\"" + field + "\" must be a number");
        }
        return n.floatValue();
    }

    /** What is wrong with a line. */
    private static final class Invalid extends Exception {
        Invalid(String message) {
            super(message, null, false, false);
        }
    }
}
