package dev.nibble.runtime;

/** A model, cache or buffer does not fit in the memory a backend has; the message says what each part needs. */
public final class InsufficientMemoryException extends RuntimeException {
    public InsufficientMemoryException(String message) {
        super(message);
    }
}
