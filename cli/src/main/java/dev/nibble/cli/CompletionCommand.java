package dev.nibble.cli;

import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.AutoComplete;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code nibble completion bash|zsh}: prints the shell completion script (picocli's, which serves both shells). */
@Command(name = "completion", mixinStandardHelpOptions = true,
        description = {"Prints a script that completes nibble's commands, options and files in bash or zsh.",
            "Load it from your shell's start-up file with: source <(nibble completion SHELL)"})
final class CompletionCommand implements Callable<Integer> {

    enum Shell { bash, zsh }

    @Parameters(paramLabel = "SHELL", description = "bash or zsh.")
    Shell shell;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        // picocli's script is for bash and, through bashcompinit (which it loads), for zsh.
        out.print(AutoComplete.bash("nibble", spec.root().commandLine()));
        out.flush();
        return 0;
    }
}
