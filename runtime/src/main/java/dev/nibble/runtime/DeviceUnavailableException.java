package dev.nibble.runtime;

/** The device a user asked for cannot be used here; the message says why and what to use instead. */
public final class DeviceUnavailableException extends RuntimeException {
    public DeviceUnavailableException(String message) {
        super(message);
    }
}
