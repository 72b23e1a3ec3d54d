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
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    /**
     * Exit codes: 0 success (or a reader of the output that left, as {@code | head} does), 1 bad input, failed job or
     * output that cannot be written, 2 bad usage; each error is one line ({@link ErrorReporter}), never a stack trace
     * unless NIBBLE_DEBUG is set, whatever the thread and whenever it happens.
     */
    public static void main(String[] args) {
        // Before anything reads standard input: closed (<&-), descriptor 0 is a file the JVM opened, not input.
        StandardStreams.emptyWhenClosed();
        Thread.setDefaultUncaughtExceptionHandler(ErrorReporter::uncaught);
        CommandLine cl = null;
        int code;
        try {
            cl = commandLine();
            // Writes that fail (a full disk, a closed pipe) stop the command rather than vanish as in System.out.
            cl.setOut(new PrintWriter(new OutputStreamWriter(StandardStreams.output(), StandardCharsets.UTF_8), true));
            cl.setErr(new PrintWriter(new OutputStreamWriter(StandardStreams.error(), StandardCharsets.UTF_8), true));
            code = cl.execute(args);
        } catch (Throwable t) { // outside a command: class initialisation, the handlers themselves
            code = ErrorReporter.report(t, cl);
        }
        if (cl != null) {
            try {
                cl.getOut().flush();
                cl.getErr().flush();
            } catch (Throwable t) { // output left unwritten: a failure after success; after a failure, already said
                code = code == 0 ? ErrorReporter.report(t, cl) : code;
            }
        }
        System.exit(code);
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
            try {
                if (!command.isUsageHelpRequested() && !command.isVersionHelpRequested()) {
                    LlamaCppFlags.warn(command, command.commandSpec().commandLine().getErr());
                }
                return new CommandLine.RunLast().execute(parsed);
            } catch (CommandLine.ExecutionException | CommandLine.ParameterException e) {
                throw e; // picocli hands these to the ErrorReporter
            } catch (RuntimeException | Error e) {
                // What picocli passes through: errors (out of memory, stack overflow, a class that cannot initialise)
                // and failures while printing help or a version.
                return ErrorReporter.report(e, command.commandSpec().commandLine());
            }
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
