package dev.nibble.runtime;

import dev.nibble.runtime.nativelib.NibbleCuda;
import java.util.Locale;
import java.util.Optional;

/**
 * The one place that chooses a backend from a {@code --device} value: {@code auto} (the default), {@code cpu},
 * {@code cuda} or {@code cuda:N}. {@code auto} takes the first GPU when the CUDA library loads and sees one, and the
 * CPU otherwise; either way {@link Choice#reason()} says in one line which it took and why.
 */
public final class Devices {

    private Devices() {}

    /** A backend opened for the user, and the line that tells them which and why. */
    public record Choice(Backend backend, String reason) {}

    /**
     * Opens the backend {@code spec} names, with {@code threads} CPU threads (0: one per CPU) and at most
     * {@code gpuMemoryBytes} of GPU memory (0: no cap). A GPU asked for by name that cannot be used is a
     * {@link DeviceUnavailableException} saying why; a malformed spec an {@link IllegalArgumentException}.
     */
    public static Choice open(String spec, int threads, long gpuMemoryBytes) {
        String s = spec == null ? "auto" : spec.trim().toLowerCase(Locale.ROOT);
        if (s.equals("cpu")) {
            Backend cpu = new CpuBackend(threads);
            return new Choice(cpu, "device: " + cpu.description());
        }
        if (s.equals("auto")) {
            Optional<String> problem = NibbleCuda.unavailable();
            if (problem.isEmpty()) {
                Backend gpu = new CudaBackend(0, gpuMemoryBytes);
                return new Choice(gpu, "device: " + gpu.description() + " (auto: a CUDA GPU is present; --device cpu to use the CPU)");
            }
            Backend cpu = new CpuBackend(threads);
            return new Choice(cpu, "device: " + cpu.description() + " (auto: " + problem.get() + ")");
        }
        if (s.equals("cuda") || s.startsWith("cuda:")) {
            int index = s.equals("cuda") ? 0 : parseIndex(spec, s.substring(5));
            Optional<String> problem = NibbleCuda.unavailable();
            if (problem.isPresent()) {
                throw new DeviceUnavailableException("--device " + spec + ": " + problem.get() + "; use --device cpu");
            }
            Backend gpu = new CudaBackend(index, gpuMemoryBytes);
            return new Choice(gpu, "device: " + gpu.description());
        }
        throw new IllegalArgumentException("--device " + spec + " is not one of auto, cpu, cuda, cuda:N");
    }

    private static int parseIndex(String spec, String digits) {
        try {
            int i = Integer.parseInt(digits);
            if (i >= 0) {
                return i;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException("--device " + spec + ": the GPU index must be a number from 0, as in cuda:0");
    }

    /** Parses a size such as {@code 48G}, {@code 512M}, {@code 1.5T} or a plain byte count (binary units). */
    public static long parseSize(String text) {
        String t = text.trim().toUpperCase(Locale.ROOT).replace("IB", "").replace("B", "");
        long unit = 1;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'K' -> unit = 1L << 10;
                case 'M' -> unit = 1L << 20;
                case 'G' -> unit = 1L << 30;
                case 'T' -> unit = 1L << 40;
                default -> unit = 1;
            }
        }
        String number = unit == 1 ? t : t.substring(0, t.length() - 1);
        try {
            double value = Double.parseDouble(number);
            if (value > 0 && value * unit < Long.MAX_VALUE) {
                return (long) (value * unit);
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException("'" + text + "' is not a size; write it as 48G, 512M or a byte count");
    }
}
