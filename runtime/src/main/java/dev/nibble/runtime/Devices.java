package dev.nibble.runtime;

import dev.nibble.runtime.nativelib.NibbleCuda;
import java.util.Locale;
import java.util.Optional;

/**
 * The one place that chooses where a model runs from a {@code --device} value: {@code auto} (the default), {@code cpu},
 * {@code cuda} or {@code cuda:N}, and from {@code --gpu-layers}. {@code auto} takes the first GPU when the CUDA library
 * loads and sees one, and the CPU otherwise; either way {@link Choice#reason()} says in one line which it took and why.
 * On a GPU, layers that do not fit in its memory (or beyond {@code --gpu-layers}) run on the CPU.
 */
public final class Devices {

    private Devices() {}

    /** Where the model will run, opened for the user, and the line that tells them which device and why. */
    public record Choice(Placement placement, String reason) {}

    /**
     * Opens what {@code spec} names, with {@code threads} CPU threads (0: one per CPU) and at most
     * {@code gpuMemoryBytes} of GPU memory (0: no cap). On a GPU, {@code gpuLayers} is how many layers it runs, the
     * first ones, the rest running on the CPU ({@link Placement#FIT}: as many as fit in its memory; 0: none, the CPU
     * runs the model; more than the model has: all); on the CPU it is ignored. A GPU asked for by name that cannot be
     * used is a {@link DeviceUnavailableException} saying why; a malformed spec an {@link IllegalArgumentException}.
     */
    public static Choice open(String spec, int threads, long gpuMemoryBytes, int gpuLayers) {
        if (gpuLayers < Placement.FIT) {
            throw new IllegalArgumentException("--gpu-layers " + gpuLayers + ": give a number of layers from 0, or"
                    + " leave it out to put as many on the GPU as fit");
        }
        String s = spec == null ? "auto" : spec.trim().toLowerCase(Locale.ROOT);
        String ignored = gpuLayers > 0 ? "; --gpu-layers is ignored without a GPU" : "";
        if (s.equals("cpu")) {
            Backend cpu = new CpuBackend(threads);
            return new Choice(Placement.of(cpu), "device: " + cpu.description() + (ignored.isEmpty() ? ""
                    : " (" + ignored.substring(2) + ")"));
        }
        if (s.equals("auto")) {
            Optional<String> problem = NibbleCuda.unavailable();
            if (problem.isEmpty()) {
                return onGpu(0, threads, gpuMemoryBytes, gpuLayers,
                        " (auto: a CUDA GPU is present; --device cpu to use the CPU)");
            }
            Backend cpu = new CpuBackend(threads);
            return new Choice(Placement.of(cpu), "device: " + cpu.description() + " (auto: " + problem.get() + ignored
                    + ")");
        }
        if (s.equals("cuda") || s.startsWith("cuda:")) {
            int index = s.equals("cuda") ? 0 : parseIndex(spec, s.substring(5));
            Optional<String> problem = NibbleCuda.unavailable();
            if (problem.isPresent()) {
                throw new DeviceUnavailableException("--device " + spec + ": " + problem.get() + "; use --device cpu");
            }
            return onGpu(index, threads, gpuMemoryBytes, gpuLayers, "");
        }
        throw new IllegalArgumentException("--device " + spec + " is not one of auto, cpu, cuda, cuda:N");
    }

    /** GPU {@code index} with the CPU for the layers it does not run, or the CPU alone for {@code --gpu-layers 0}. */
    private static Choice onGpu(int index, int threads, long gpuMemoryBytes, int gpuLayers, String why) {
        if (gpuLayers == 0) {
            Backend cpu = new CpuBackend(threads);
            return new Choice(Placement.of(cpu), "device: " + cpu.description() + " (--gpu-layers 0)");
        }
        Backend gpu = new CudaBackend(index, gpuMemoryBytes);
        Backend cpu;
        try {
            cpu = new CpuBackend(threads);
        } catch (RuntimeException e) {
            gpu.close();
            throw e;
        }
        return new Choice(Placement.split(gpu, gpuLayers, cpu), "device: " + gpu.description() + why
                + (gpuLayers == Placement.FIT ? "" : ", --gpu-layers " + gpuLayers));
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
