package dev.nibble.runtime.nativelib;

/**
 * A native kernel returned an error status; the message names the C function and the status. {@link #isFault()}: the
 * memory a CPU kernel read faulted (NB_ERR_FAULT), which for a model's weights means its file was truncated or
 * overwritten while mapped; the call was abandoned and the context stays usable.
 */
public final class NativeKernelException extends RuntimeException {

    /** NB_ERR_FAULT in nibble.h: a SIGBUS inside a CPU kernel, caught by libnibble_cpu. */
    public static final int FAULT = 5;

    private final String call;
    private final int status;

    public NativeKernelException(String call, int status) {
        this(call, status, describe(status));
    }

    /** With the library's own words for what went wrong (the CUDA library keeps them per context). */
    public NativeKernelException(String call, int status, String detail) {
        super(call + " failed: " + detail + " (status " + status + ")");
        this.call = call;
        this.status = status;
    }

    /** The C symbol that failed, e.g. {@code nb_matmul}. */
    public String call() {
        return call;
    }

    /** The nb_status code from nibble.h. */
    public int status() {
        return status;
    }

    /** Whether the kernel's memory faulted (NB_ERR_FAULT): a mapped file shrank or was replaced in place under it. */
    public boolean isFault() {
        return status == FAULT;
    }

    private static String describe(int status) {
        return switch (status) {
            case 1 -> "invalid argument";
            case 2 -> "unsupported type or instruction set";
            case 3 -> "device error";
            case 4 -> "out of memory or threads";
            case FAULT -> "the memory it read faulted (SIGBUS): a mapped file was truncated or overwritten while in use";
            default -> "unknown error";
        };
    }
}
