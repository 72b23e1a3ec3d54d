package dev.nibble.runtime.nativelib;

/** A native kernel returned an error status; the message names the C function and the status. */
public final class NativeKernelException extends RuntimeException {

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

    private static String describe(int status) {
        return switch (status) {
            case 1 -> "invalid argument";
            case 2 -> "unsupported type or instruction set";
            case 3 -> "device error";
            case 4 -> "out of memory or threads";
            default -> "unknown error";
        };
    }
}
