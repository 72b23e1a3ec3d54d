package dev.nibble.cli;

import dev.nibble.cli.batch.BatchCommand;
import dev.nibble.cli.bench.BenchCommand;
import dev.nibble.cli.chat.ChatCommand;
import dev.nibble.cli.generate.GenerateCommand;
import dev.nibble.cli.inspect.InspectCommand;
import dev.nibble.cli.perplexity.PerplexityCommand;
import dev.nibble.cli.serve.ServeCommand;
import dev.nibble.runtime.nativelib.NibbleCpu;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code nibble} command: one subcommand per job. */
@Command(name = "nibble",
        mixinStandardHelpOptions = true,
        versionProvider = Nibble.Version.class,
        description = "Runs Llama-family language models in 4 bits on CPUs and NVIDIA GPUs.",
        subcommands = {ConvertCommand.class, InspectCommand.class, TokenizeCommand.class, GenerateCommand.class, ChatCommand.class,
            BatchCommand.class, ServeCommand.class, PerplexityCommand.class, BenchCommand.class, CompletionCommand.class,
            CommandLine.HelpCommand.class})
public final class Nibble implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** Exit codes: 0 success, 1 bad input or failed job, 2 bad usage (one line: {@link ErrorReporter}). */
    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    static CommandLine commandLine() {
        return commandLine(System.getenv());
    }

    /** The command line with defaults from {@code environment} (NIBBLE_MODEL, ...: {@link EnvironmentDefaults}). */
    static CommandLine commandLine(Map<String, String> environment) {
        CommandLine cl = new CommandLine(new Nibble());
        // As llama.cpp: "-ngl 99" is one option, not -n with "gl".
        cl.setPosixClusteredShortOptionsAllowed(false);
        cl.setDefaultValueProvider(new EnvironmentDefaults(environment));
        ErrorReporter errors = new ErrorReporter();
        cl.setExecutionExceptionHandler(errors);
        cl.setParameterExceptionHandler(errors);
        cl.setExecutionStrategy(parsed -> {
            CommandLine.ParseResult command = parsed;
            while (command.subcommand() != null) {
                command = command.subcommand();
            }
            if (!command.isUsageHelpRequested() && !command.isVersionHelpRequested()) {
                LlamaCppFlags.warn(command, command.commandSpec().commandLine().getErr());
            }
            return new CommandLine.RunLast().execute(parsed);
        });
        Examples.addTo(cl);
        // Token pieces and decoded text are UTF-8 whatever the platform's default console encoding is.
        cl.setOut(new PrintWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8), true));
        cl.setErr(new PrintWriter(new OutputStreamWriter(System.err, StandardCharsets.UTF_8), true));
        return cl;
    }

    /** Reports the build and what the native CPU library found on this machine. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Nibble.class.getPackage().getImplementationVersion();
            int features = NibbleCpu.cpuFeatures();
            return new String[] {
                "nibble " + (v == null ? "(development build)" : v),
                "kernels " + NibbleCpu.version() + ", CPU features: " + NibbleCpu.describeFeatures(features),
                "Java " + Runtime.version()
            };
        }
    }
}
