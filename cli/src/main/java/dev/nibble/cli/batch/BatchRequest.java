package dev.nibble.cli.batch;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.cli.openai.InvalidRequestException;
import dev.nibble.cli.openai.OpenAiRequest;
import dev.nibble.cli.openai.Sampling;
import dev.nibble.runtime.chat.ChatMessage;
import java.util.List;

/**
 * One line of a batch input file, in nibble's own form ({@code {"id", "prompt" | "messages", "max_tokens", ...}}) or
 * in the OpenAI batch form ({@code {"custom_id", "method": "POST", "url", "body": {...}}}, whose body
 * {@link OpenAiRequest} reads, as {@code nibble serve} does), or why it cannot be run.
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

    static final String CHAT_URL = OpenAiRequest.CHAT_URL;
    static final String COMPLETIONS_URL = OpenAiRequest.COMPLETIONS_URL;

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
                throw new InvalidRequestException(openAi ? "custom_id must be a string"
                        : "no \"id\" (a string or an integer) to name the result");
            }
            return openAi ? openAi(number, id, root) : own(number, id, root);
        } catch (InvalidRequestException e) {
            return invalid(number, id != null && (id.isTextual() || id.isIntegralNumber()) ? id : null, openAi,
                    e.getMessage());
        }
    }

    private static BatchRequest own(int number, JsonNode id, JsonNode root) throws InvalidRequestException {
        JsonNode prompt = root.get("prompt");
        JsonNode messages = root.get("messages");
        if ((prompt == null) == (messages == null)) {
            throw new InvalidRequestException("give exactly one of \"prompt\" and \"messages\"");
        }
        return new BatchRequest(number, id, false, messages != null,
                prompt == null ? null : OpenAiRequest.text(prompt, "prompt"),
                messages == null ? null : OpenAiRequest.messages(messages), OpenAiRequest.integer(root, "max_tokens"),
                OpenAiRequest.sampling(root), OpenAiRequest.stops(root.get("stop")), null);
    }

    private static BatchRequest openAi(int number, JsonNode id, JsonNode root) throws InvalidRequestException {
        JsonNode method = root.get("method");
        if (method != null && !"POST".equals(method.asText())) {
            throw new InvalidRequestException("method must be POST");
        }
        OpenAiRequest body = OpenAiRequest.parse(root.path("url").asText(""), root.get("body"));
        return new BatchRequest(number, id, true, body.chat(), body.prompt(), body.messages(), body.maxTokens(),
                body.sampling(), body.stop(), null);
    }
}
