package dev.nibble.cli.openai;

/**
 * What is wrong with a request body (a missing field, a field of the wrong type): the client's fault, answered with
 * an error naming the field (HTTP 400 from {@code nibble serve}, an error result from {@code nibble batch}).
 */
public final class InvalidRequestException extends Exception {

    private final String param;

    public InvalidRequestException(String message) {
        this(message, null);
    }

    /** @param param the body field at fault, or null */
    public InvalidRequestException(String message, String param) {
        super(message, null, false, false);
        this.param = param;
    }

    /** The body field at fault (OpenAI's {@code param}), or null. */
    public String param() {
        return param;
    }
}
