package dev.nibble.cli;

import dev.nibble.runtime.Devices;
import dev.nibble.runtime.LoadProgress;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Placement;
import java.io.PrintWriter;
import java.util.Locale;
import picocli.CommandLine.Option;

/** {@code --device}, {@code --gpu-layers}, {@code --gpu-memory} and {@code --threads}: where a command runs the model. */
public final class DeviceOptions {

    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "auto",
            description = "auto (a CUDA GPU when one is usable, else the CPU), cpu, cuda or cuda:N (default: $NIBBLE_DEVICE, "
                    + "else auto).")
    String device;

    @Option(names = {"--gpu-layers", "-ngl", "--n-gpu-layers"}, paramLabel = "N",
            description = "Layers the GPU runs, the first ones; the rest run on the CPU. Default: as many as fit in its "
                    + "memory (with a KV cache of --ctx, else 4096 positions); 0: the CPU runs everything; all (or a "
                    + "number above the model's layers): every layer on the GPU.")
    String gpuLayers;

    @Option(names = "--gpu-memory", paramLabel = "SIZE",
            description = "Use at most SIZE of GPU memory in all (e.g. 48G, to plan for a smaller card); default: what is free.")
    String gpuMemory;

    @Option(names = {"-t", "--threads"}, defaultValue = "0", paramLabel = "N",
            description = "CPU threads (0: one per CPU; default: $NIBBLE_THREADS, else 0).")
    int threads;

    /** Opens the backends and tells the user on {@code err}, in one line, which device runs and why. */
    public Placement open(PrintWriter err) {
        long cap = gpuMemory == null ? 0 : Devices.parseSize(gpuMemory);
        Devices.Choice choice = Devices.open(device, threads, cap, layers(gpuLayers));
        err.println("nibble: " + choice.reason());
        err.flush();
        return choice.placement();
    }

    /** {@code --gpu-layers}: a count, {@code all}, or {@code auto} (as llama.cpp's {@code -ngl} takes them). */
    static int layers(String value) {
        if (value == null || value.equalsIgnoreCase("auto")) {
            return Placement.FIT;
        }
        if (value.equalsIgnoreCase("all")) {
            return Integer.MAX_VALUE;
        }
        try {
            int n = Integer.parseInt(value.trim());
            if (n >= 0) {
                return n;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException("--gpu-layers " + value + " is not a number of layers; give 0 or more, all,"
                + " or auto");
    }

    /** Says on {@code err} which layers run where and why, when more than one device runs the model. */
    public static void reportPlacement(Model model, PrintWriter err) {
        if (model.placementReport() != null) {
            err.println("nibble: " + model.placementReport());
            err.flush();
        }
    }

    /** A progress line for weights copied to a device, on a terminal only (a log gets none). */
    public static LoadProgress loadProgress(PrintWriter err) {
        if (System.console() == null || !System.console().isTerminal()) {
            return LoadProgress.NONE;
        }
        int[] shown = {-1};
        return (bytes, total) -> {
            int percent = (int) (100 * bytes / Math.max(total, 1));
            if (percent != shown[0]) {
                shown[0] = percent;
                err.print(String.format(Locale.ROOT, "\rnibble: loading weights %3d%% (%.1f / %.1f GiB)%s", percent,
                        bytes / (double) (1L << 30), total / (double) (1L << 30), bytes >= total ? "\n" : ""));
                err.flush();
            }
        };
    }
}
