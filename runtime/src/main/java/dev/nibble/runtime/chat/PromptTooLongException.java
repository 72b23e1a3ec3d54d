package dev.nibble.runtime.chat;

/** The part of a conversation that must stay (system prompt and latest user message) does not fit the context. */
public final class PromptTooLongException extends IllegalArgumentException {

    public PromptTooLongException(String message) {
        super(message);
    }
}
