package dev.nibble.cli;

import java.io.PrintWriter;
import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;

/**
 * llama.cpp flags that nibble has no use for, so that a command line copied from llama.cpp runs: each is accepted
 * (hidden from --help) and gets one warning line saying what nibble does instead. Flags that would change the
 * result are not here: they stay unknown options.
 */
public final class LlamaCppFlags {

    /** First name of each flag, and what nibble does instead; {@link #warn} prints these, the README lists them. */
    static final Map<String, String> INSTEAD = new LinkedHashMap<>();

    static {
        INSTEAD.put("-fa", "nibble's attention is always fused (flash-decoding on the GPU); there is nothing to switch");
        INSTEAD.put("--mlock", "nibble maps the model file and leaves paging to the OS; pinning it is not supported");
        INSTEAD.put("--no-mmap", "nibble always maps the model file (on a GPU, weights are copied from the mapping)");
        INSTEAD.put("-b", "nibble chooses its own batch sizes");
        INSTEAD.put("-ub", "nibble chooses its own batch sizes");
        INSTEAD.put("-mg", "choose the GPU with --device cuda:N");
        INSTEAD.put("-ts", "nibble runs a model on one GPU; splitting it across GPUs is not supported yet");
        INSTEAD.put("-sm", "nibble runs a model on one GPU; splitting it across GPUs is not supported yet");
        INSTEAD.put("--numa", "nibble does not place threads by NUMA node; -t sets how many there are");
        INSTEAD.put("-cb", "nibble batch and nibble serve always batch continuously");
    }

    @Option(names = {"-fa", "--flash-attn"}, hidden = true, arity = "0..1", paramLabel = "on|off|auto")
    String flashAttention;

    @Option(names = "--mlock", hidden = true)
    boolean mlock;

    @Option(names = "--no-mmap", hidden = true)
    boolean noMmap;

    @Option(names = {"-b", "--batch-size"}, hidden = true, paramLabel = "N")
    String batchSize;

    @Option(names = {"-ub", "--ubatch-size"}, hidden = true, paramLabel = "N")
    String ubatchSize;

    @Option(names = {"-mg", "--main-gpu"}, hidden = true, paramLabel = "N")
    String mainGpu;

    @Option(names = {"-ts", "--tensor-split"}, hidden = true, paramLabel = "SPLIT")
    String tensorSplit;

    @Option(names = {"-sm", "--split-mode"}, hidden = true, paramLabel = "MODE")
    String splitMode;

    @Option(names = "--numa", hidden = true, paramLabel = "TYPE")
    String numa;

    @Option(names = {"-cb", "--cont-batching"}, hidden = true)
    boolean continuousBatching;

    /** One warning line on {@code err} for each of these flags the command line gave. */
    static void warn(CommandLine.ParseResult parsed, PrintWriter err) {
        for (OptionSpec option : parsed.matchedOptions()) {
            String instead = INSTEAD.get(option.names()[0]);
            if (instead != null) {
                err.println("nibble: warning: " + option.names()[0] + " ignored: " + instead);
            }
        }
        err.flush();
    }

    /** The flags {@code command} accepts this way ("-ngl, -fa, ..."), empty when none, for its help. */
    static String describe(CommandLine.Model.CommandSpec command) {
        StringBuilder s = new StringBuilder();
        for (String name : INSTEAD.keySet()) {
            if (command.findOption(name) != null) {
                s.append(s.isEmpty() ? "" : ", ").append(name);
            }
        }
        return s.toString();
    }
}
