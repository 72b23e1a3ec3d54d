package dev.nibble.cli;

import dev.nibble.runtime.Backend;
import dev.nibble.runtime.Devices;
import dev.nibble.runtime.LoadProgress;
import java.io.PrintWriter;
import java.util.Locale;
import picocli.CommandLine.Option;

/** {@code --device}, {@code --gpu-memory} and {@code --threads}: where a command runs the model. */
public final class DeviceOptions {

    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "auto",
            description = "auto (a CUDA GPU when one is usable, else the CPU), cpu, cuda or cuda:N (default: $NIBBLE_DEVICE, "
                    + "else auto).")
    String device;

    @Option(names = "--gpu-memory", paramLabel = "SIZE",
            description = "Use at most SIZE of GPU memory in all (e.g. 48G, to plan for a smaller card); default: what is free.")
    String gpuMemory;

    @Option(names = {"-t", "--threads"}, defaultValue = "0", paramLabel = "N",
            description = "CPU threads (0: one per CPU; default: $NIBBLE_THREADS, else 0).")
    int threads;

    /** Opens the backend and tells the user on {@code err}, in one line, which one runs and why. */
    public Backend open(PrintWriter err) {
        long cap = gpuMemory == null ? 0 : Devices.parseSize(gpuMemory);
        Devices.Choice choice = Devices.open(device, threads, cap);
        err.println("nibble: " + choice.reason());
        err.flush();
        return choice.backend();
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
