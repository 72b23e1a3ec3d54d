package dev.nibble.cli.openai;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.runtime.GenerationResult;
import java.io.UncheckedIOException;

/**
 * OpenAI response objects for one model: a whole completion ({@code chat.completion}, {@code text_completion}), the
 * chunks of a streamed one ({@code chat.completion.chunk}; {@code text_completion} with a piece of text), and the error
 * body {@code {"error": {"message", "type", "param", "code"}}}.
 */
public final class OpenAiResponses {

    private final ObjectMapper json;
    private final String model;

    /** @param model the model's name, as the responses' {@code model} field gives it */
    public OpenAiResponses(ObjectMapper json, String model) {
        this.json = json;
        this.model = model;
    }

    public String model() {
        return model;
    }

    /**
     * Why generation ended, in OpenAI's words: {@code stop} (an end token or a stop string) or {@code length} (the
     * token limit, or a full context, which OpenAI also reports as a length limit).
     */
    public static String finishReason(GenerationResult.StopReason reason) {
        return switch (reason) {
            case END_TOKEN, STOP_STRING -> "stop";
            case MAX_TOKENS, CONTEXT_FULL -> "length";
            case CANCELLED -> throw new IllegalArgumentException("a cancelled request has no result");
        };
    }

    /** A whole answer: a {@code chat.completion} or a {@code text_completion}, with its {@code usage}. */
    public ObjectNode completion(boolean chat, String id, long created, GenerationResult g) {
        ObjectNode body = head(chat ? "chat.completion" : "text_completion", id, created);
        ObjectNode choice = body.putArray("choices").addObject();
        choice.put("index", 0);
        if (chat) {
            ObjectNode message = choice.putObject("message");
            message.put("role", "assistant");
            message.put("content", g.text());
        } else {
            choice.put("text", g.text());
        }
        choice.putNull("logprobs");
        choice.put("finish_reason", finishReason(g.stopReason()));
        usage(body.putObject("usage"), g.promptTokens(), g.generatedTokens(), true);
        return body;
    }

    /**
     * One chunk of a streamed answer: a piece of text ({@code text} not null), or the last chunk, with
     * {@code finishReason} and no text. The first chunk of a chat answer says the role: {@link #roleChunk}.
     */
    public ObjectNode chunk(boolean chat, String id, long created, String text, String finishReason) {
        ObjectNode body = head(chat ? "chat.completion.chunk" : "text_completion", id, created);
        ObjectNode choice = body.putArray("choices").addObject();
        choice.put("index", 0);
        if (chat) {
            ObjectNode delta = choice.putObject("delta");
            if (text != null) {
                delta.put("content", text);
            }
        } else {
            choice.put("text", text != null ? text : "");
        }
        choice.putNull("logprobs");
        if (finishReason != null) {
            choice.put("finish_reason", finishReason);
        } else {
            choice.putNull("finish_reason");
        }
        return body;
    }

    /** The first chunk of a streamed chat answer: {@code delta: {"role": "assistant", "content": ""}}. */
    public ObjectNode roleChunk(String id, long created) {
        ObjectNode body = chunk(true, id, created, "", null);
        ObjectNode delta = (ObjectNode) body.get("choices").get(0).get("delta");
        delta.removeAll();
        delta.put("role", "assistant");
        delta.put("content", "");
        return body;
    }

    /** The chunk after the last one when the client asked for usage: no choices, the token counts. */
    public ObjectNode usageChunk(boolean chat, String id, long created, int promptTokens, int completionTokens) {
        ObjectNode body = head(chat ? "chat.completion.chunk" : "text_completion", id, created);
        body.putArray("choices");
        usage(body.putObject("usage"), promptTokens, completionTokens, true);
        return body;
    }

    private ObjectNode head(String object, String id, long created) {
        ObjectNode body = json.createObjectNode();
        body.put("id", id);
        body.put("object", object);
        body.put("created", created);
        body.put("model", model);
        return body;
    }

    /**
     * An error body. {@code type}: {@code invalid_request_error} (the client's fault), {@code server_error}, ...;
     * {@code param} and {@code code} may be null.
     */
    public ObjectNode error(String message, String type, String param, String code) {
        ObjectNode body = json.createObjectNode();
        ObjectNode error = body.putObject("error");
        error.put("message", message);
        error.put("type", type);
        if (param != null) {
            error.put("param", param);
        } else {
            error.putNull("param");
        }
        if (code != null) {
            error.put("code", code);
        } else {
            error.putNull("code");
        }
        return body;
    }

    /** Token counts: {@code prompt_tokens}, {@code completion_tokens} and, with {@code total}, {@code total_tokens}. */
    public static void usage(ObjectNode u, int prompt, int completion, boolean total) {
        u.put("prompt_tokens", prompt);
        u.put("completion_tokens", completion);
        if (total) {
            u.put("total_tokens", prompt + completion);
        }
    }

    /** The object as compact JSON text. */
    public String text(ObjectNode o) {
        try {
            return json.writeValueAsString(o);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }
}
