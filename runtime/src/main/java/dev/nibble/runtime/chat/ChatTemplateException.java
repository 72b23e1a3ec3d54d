package dev.nibble.runtime.chat;

/** A chat template that does not compile or render, including one that called {@code raise_exception}. */
public final class ChatTemplateException extends IllegalArgumentException {

    public ChatTemplateException(String message) {
        super(message);
    }
}
