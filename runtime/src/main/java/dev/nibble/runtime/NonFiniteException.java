package dev.nibble.runtime;

/** The model computed NaN or an infinity: its weights are damaged or overflow; nothing is sampled from it. */
public final class NonFiniteException extends IllegalStateException {

    public NonFiniteException(String message) {
        super(message);
    }
}
