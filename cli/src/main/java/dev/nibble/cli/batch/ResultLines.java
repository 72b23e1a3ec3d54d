package dev.nibble.cli.batch;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.cli.openai.OpenAiResponses;
import dev.nibble.runtime.GenerationResult;
import java.io.UncheckedIOException;

/**
 * The result line of a request, in the form of its input line: nibble's own
 * ({@code {"id", "text", "finish_reason", "usage", "error"?}}) or OpenAI's batch output
 * ({@code {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}}), whose body is the one
 * {@code nibble serve} answers ({@link OpenAiResponses}).
 */
final class ResultLines {

    private final ObjectMapper json;
    private final OpenAiResponses responses;
    private final long created = System.currentTimeMillis() / 1000;

    ResultLines(ObjectMapper json, String modelName) {
        this.json = json;
        this.responses = new OpenAiResponses(json, modelName);
    }

    /** Why generation ended, in nibble's words: stop, length or context. */
    static String finishReason(GenerationResult.StopReason reason) {
        return switch (reason) {
            case END_TOKEN, STOP_STRING -> "stop";
            case MAX_TOKENS -> "length";
            case CONTEXT_FULL -> "context";
            case CANCELLED -> throw new IllegalArgumentException("a cancelled request has no result");
        };
    }

    String result(BatchRequest r, GenerationResult g) {
        if (!r.openAi()) {
            ObjectNode o = json.createObjectNode();
            o.set("id", r.id());
            o.put("text", g.text());
            o.put("finish_reason", finishReason(g.stopReason()));
            OpenAiResponses.usage(o.putObject("usage"), g.promptTokens(), g.generatedTokens(), false);
            return text(o);
        }
        ObjectNode body = responses.completion(r.chat(), (r.chat() ? "chatcmpl-" : "cmpl-") + r.line(), created, g);
        return openAi(r, 200, body);
    }

    /**
     * A request that could not run: a malformed line or a prompt too long (the request's fault, {@code internal}
     * false: OpenAI status 400), or a failure while it ran (500).
     */
    String error(BatchRequest r, String message, boolean internal) {
        if (!r.openAi()) {
            ObjectNode o = json.createObjectNode();
            if (r.id() != null) {
                o.set("id", r.id());
            } else {
                o.putNull("id");
                o.put("line", r.line());
            }
            o.put("text", "");
            o.put("finish_reason", "error");
            OpenAiResponses.usage(o.putObject("usage"), 0, 0, false);
            o.put("error", message);
            return text(o);
        }
        ObjectNode body = responses.error(message, internal ? "server_error" : "invalid_request_error", null, null);
        return openAi(r, internal ? 500 : 400, body);
    }

    private String openAi(BatchRequest r, int status, ObjectNode body) {
        ObjectNode o = json.createObjectNode();
        o.put("id", "batch_req_" + r.line());
        if (r.id() != null) {
            o.set("custom_id", r.id());
        } else {
            o.putNull("custom_id");
        }
        ObjectNode response = o.putObject("response");
        response.put("status_code", status);
        response.put("request_id", "req_" + r.line());
        response.set("body", body);
        o.putNull("error");
        return text(o);
    }

    private String text(ObjectNode o) {
        try {
            return json.writeValueAsString(o);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }
}
