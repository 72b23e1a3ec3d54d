package dev.nibble.cli.chat;

import dev.nibble.cli.DeviceOptions;
import dev.nibble.cli.LlamaCppFlags;
import dev.nibble.cli.ModelOption;
import dev.nibble.cli.generate.SamplingOptions;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.Generator;
import dev.nibble.runtime.Sampler;
import dev.nibble.runtime.chat.ChatHistory;
import dev.nibble.runtime.chat.ChatSession;
import dev.nibble.runtime.chat.ModelChatEngine;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code nibble chat}: an interactive conversation with a model in its own chat format. */
@Command(name = "chat", mixinStandardHelpOptions = true,
        description = {"Chats with MODEL in its own chat format (the template stored in the model, else a built-in one).",
            "Answers stream as they are generated; Ctrl-C stops an answer, Ctrl-D or /quit leaves; /help lists the commands.",
            "Without a terminal, reads one message per line from standard input and prints each answer on its own line.",
            "Sampling values not given are the model's own defaults (its generation_config.json, stored by nibble "
                    + "convert), else llama.cpp's; the first line says which."})
public final class ChatCommand implements Callable<Integer> {

    @Mixin
    ModelOption model;

    @Option(names = "--system", paramLabel = "TEXT", description = "System prompt.")
    String system;

    @Option(names = "--template", paramLabel = "NAME", defaultValue = ModelChatFormat.AUTO,
            description = "Chat template: auto (the model's own, else one matching its vocabulary), llama2, llama3 or chatml "
                    + "(default ${DEFAULT-VALUE}).")
    String template;

    @Option(names = {"-n", "--n-predict", "--predict"}, defaultValue = "-1", paramLabel = "N",
            description = "Tokens per answer at most (-1: until the model ends its turn or the context is full).")
    int maxTokens;

    @Option(names = {"-c", "--ctx-size", "--ctx"}, defaultValue = "0", paramLabel = "N",
            description = "Context size in tokens (0: the model's, capped by free memory; default: $NIBBLE_CTX, else 0). "
                    + "The oldest exchanges are dropped to fit.")
    int ctx;

    @Mixin
    DeviceOptions device;

    @Mixin
    SamplingOptions sampling;

    @Mixin
    LlamaCppFlags llamaCpp;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (ctx < 0) {
            throw new ParameterException(spec.commandLine(), "--ctx must be 0 (the model's, as memory allows) or more, is " + ctx);
        }
        long seed = sampling.seed();
        Path gguf = model.gguf();
        try (Generator generator = Generator.open(gguf, device.open(err), ctx, DeviceOptions.loadProgress(err))) {
            DeviceOptions.reportPlacement(generator.model(), err);
            String own = generator.model().file().metadata().findString(VocabularyGguf.CHAT_TEMPLATE).orElse(null);
            ModelChatFormat chat = ModelChatFormat.of(own, generator.tokenizer(), template);
            SamplingOptions.Resolved resolved = sampling.resolve(generator.model().file().metadata(), seed);
            Sampler sampler = new Sampler(resolved.settings());
            int context = generator.contextSize();
            ChatSession session = new ChatSession(chat.format(), new ModelChatEngine(generator.model(), generator.cache()),
                    sampler::sample, new ChatHistory(system), Math.max(0, maxTokens), answerRoom(maxTokens, context));
            err.println("nibble chat: " + gguf.getFileName() + ", template: " + chat.description() + ", context "
                    + context + " tokens, seed " + seed + ", " + resolved.description() + "; /help lists the commands");
            err.flush();
            TerminalLineSource terminal = TerminalLineSource.openSystemTerminal();
            try (LineSource input = terminal != null ? terminal : new PlainLineSource(System.in, out)) {
                new ChatLoop(session, input, out, terminal != null ? out : err, terminal != null,
                        terminal != null ? "> " : "").run();
            }
        }
        return 0;
    }

    /** Room kept free for an answer when old exchanges are dropped: the answer limit, else a quarter of the context. */
    static int answerRoom(int maxTokens, int contextSize) {
        int wanted = maxTokens > 0 ? maxTokens : contextSize / 4;
        return Math.max(1, Math.min(wanted, contextSize / 2));
    }
}
