package dev.nibble.cli.serve;

import java.util.Map;

/**
 * A request answered with an error: its HTTP status and OpenAI's error fields ({@code type}, {@code param},
 * {@code code}), and any headers the status calls for ({@code Retry-After}, {@code Allow}, {@code WWW-Authenticate}).
 */
final class HttpError extends RuntimeException {

    final int status;
    final String type;
    final String param;
    final String code;
    final Map<String, String> headers;

    HttpError(int status, String type, String param, String code, String message, Map<String, String> headers) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
        this.headers = headers;
    }

    static HttpError badRequest(String message, String param, String code) {
        return new HttpError(400, "invalid_request_error", param, code, message, Map.of());
    }

    static HttpError badRequest(String message) {
        return badRequest(message, null, null);
    }

    static HttpError unauthorized(String message) {
        return new HttpError(401, "invalid_request_error", null, "invalid_api_key", message,
                Map.of("WWW-Authenticate", "Bearer"));
    }

    static HttpError notFound(String message) {
        return new HttpError(404, "invalid_request_error", null, "not_found", message, Map.of());
    }

    static HttpError methodNotAllowed(String method, String path, String allowed) {
        return new HttpError(405, "invalid_request_error", null, "method_not_allowed",
                method + " is not allowed on " + path + "; use " + allowed, Map.of("Allow", allowed));
    }

    static HttpError tooLarge(String message) {
        return new HttpError(413, "invalid_request_error", null, "request_too_large", message, Map.of());
    }

    static HttpError tooManyRequests(String message, int retryAfterSeconds) {
        return new HttpError(429, "rate_limit_error", null, "rate_limit_exceeded", message,
                Map.of("Retry-After", Integer.toString(retryAfterSeconds)));
    }

    static HttpError unavailable(String message) {
        return new HttpError(503, "server_error", null, "unavailable", message, Map.of("Retry-After", "5"));
    }

    static HttpError internal(String message) {
        return new HttpError(500, "server_error", null, null, message, Map.of());
    }
}
