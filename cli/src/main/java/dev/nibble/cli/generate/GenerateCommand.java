package dev.nibble.cli.generate;

import dev.nibble.cli.DeviceOptions;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Generator;
import dev.nibble.runtime.Sampler;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatHistory;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.chat.ChatSession;
import dev.nibble.runtime.chat.ConversationFile;
import dev.nibble.runtime.chat.ModelChatEngine;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code nibble generate}: continues a prompt, streaming the text to stdout and a timing line to stderr; with --chat or
 * --messages, answers in the model's chat format instead.
 */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Continues PROMPT with the model, printing the prompt and then the text as it is generated.",
            "Sampling runs in Hugging Face's order: penalties, temperature, top-k, top-p, min-p. --temperature 0 is greedy.",
            "Stops at an end-of-generation token, a --stop string (not printed), -n new tokens or a full context.",
            "With --chat (or --system, or --messages FILE), answers in the model's chat format and prints only the answer."})
public final class GenerateCommand implements Callable<Integer> {

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "MODEL", description = "GGUF model file.")
    Path model;

    @Option(names = {"-p", "--prompt"}, paramLabel = "PROMPT",
            description = "Text to continue (may be empty); with --chat, the user's message.")
    String prompt;

    @Option(names = "--chat", description = "Answer PROMPT as a user message in the model's chat format (its own template, "
            + "else a built-in one), printing only the answer.")
    boolean chat;

    @Option(names = "--system", paramLabel = "TEXT", description = "With --chat: a system prompt (implies --chat).")
    String system;

    @Option(names = "--messages", paramLabel = "FILE", description = "Answer the conversation in FILE (JSON: "
            + "[{\"role\": ..., \"content\": ...}, ...], ending with the user's message) in the model's chat format.")
    Path messages;

    @Option(names = "--template", paramLabel = "NAME", defaultValue = ModelChatFormat.AUTO,
            description = "With --chat or --messages: auto (the model's own, else one matching its vocabulary), llama2, "
                    + "llama3 or chatml (default ${DEFAULT-VALUE}).")
    String template;

    @Option(names = {"-n", "--n-predict"}, defaultValue = "-1", paramLabel = "N",
            description = "New tokens at most (-1: until an end token or the context is full; default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Mixin
    SamplingOptions sampling;

    @Option(names = "--stop", paramLabel = "TEXT", description = "Stop before this text (repeatable).")
    List<String> stop = List.of();

    @Mixin
    DeviceOptions device;

    @Option(names = {"-c", "--ctx"}, defaultValue = "0", paramLabel = "N",
            description = "Context size in tokens (0: the model's, capped by free memory).")
    int ctx;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        boolean chatMode = chat || system != null || messages != null;
        if ((prompt == null) == (messages == null)) {
            throw new ParameterException(spec.commandLine(), "give -p PROMPT or --messages FILE (one of them)");
        }
        if (chatMode && !stop.isEmpty()) {
            throw new ParameterException(spec.commandLine(), "--stop is for plain generation; in chat the template's markers stop");
        }
        List<ChatMessage> conversation = chatMode ? conversation() : null;
        long actualSeed = sampling.seed();
        SamplerSettings sampler = sampling.settings(actualSeed);
        GenerationSettings settings = new GenerationSettings(maxTokens, sampler, stop);
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        try (Generator generator = Generator.open(model, device.open(err), ctx, DeviceOptions.loadProgress(err))) {
            int trained = generator.model().config().contextLength();
            if (ctx == 0 && generator.contextSize() < trained) {
                err.println("nibble: context " + generator.contextSize() + " tokens (the model's " + trained
                        + " would not fit in the free memory; --ctx sets it)");
            } else if (ctx > trained) {
                err.println("nibble: warning: --ctx " + ctx + " is beyond the " + trained
                        + " tokens the model was trained on; text past that point may degrade");
            }
            if (chatMode) {
                answer(generator, conversation, sampler, out, err);
                return 0;
            }
            out.print(prompt);
            out.flush();
            GenerationResult r = generator.generate(prompt, settings, text -> {
                out.print(text);
                out.flush();
            });
            out.println();
            out.flush();
            if (r.stopReason() == GenerationResult.StopReason.CONTEXT_FULL) {
                err.println("nibble: the context of " + generator.contextSize()
                        + " tokens is full; generation stopped (a larger --ctx allows more)");
            }
            err.println(String.format(Locale.ROOT,
                    "nibble: prompt %d tokens, %.2f tok/s; generation %d tokens, %.2f tok/s; stop: %s; seed %d; %s",
                    r.promptTokens(), r.promptTokensPerSecond(), r.generatedTokens(), r.generationTokensPerSecond(),
                    r.stopReason().name().toLowerCase(Locale.ROOT).replace('_', ' '), actualSeed,
                    generator.model().backend().description()));
            err.flush();
        }
        return 0;
    }

    /** The conversation to answer: the --messages file, or the system prompt and PROMPT. */
    private List<ChatMessage> conversation() throws IOException {
        if (messages != null) {
            List<ChatMessage> read = ConversationFile.read(messages);
            if (read.isEmpty() || !read.getLast().role().equals(ChatMessage.USER)) {
                throw new IllegalArgumentException(messages + ": the conversation must end with a user message to answer");
            }
            return read;
        }
        List<ChatMessage> out = new ArrayList<>();
        if (system != null) {
            out.add(ChatMessage.system(system));
        }
        out.add(ChatMessage.user(prompt));
        return out;
    }

    /** --chat: streams the model's answer in its chat format, and a timing line to stderr. */
    private void answer(Generator generator, List<ChatMessage> conversation, SamplerSettings sampler, PrintWriter out,
                        PrintWriter err) throws IOException {
        String own = generator.model().file().metadata().findString(VocabularyGguf.CHAT_TEMPLATE).orElse(null);
        ModelChatFormat format = ModelChatFormat.of(own, generator.tokenizer(), template);
        ChatSession session = new ChatSession(format.format(), new ModelChatEngine(generator.model(), generator.cache()),
                new Sampler(sampler)::sample, new ChatHistory(null), Math.max(0, maxTokens), 1);
        ChatSession.Turn turn = session.complete(conversation, text -> {
            out.print(text);
            out.flush();
        });
        out.println();
        out.flush();
        if (turn.stopReason() == ChatSession.StopReason.CONTEXT_FULL) {
            err.println("nibble: the context of " + generator.contextSize()
                    + " tokens is full; generation stopped (a larger --ctx allows more)");
        }
        err.println(String.format(Locale.ROOT,
                "nibble: template: %s; prompt %d tokens, %.2f tok/s; answer %d tokens, %.2f tok/s; stop: %s; seed %d; %s",
                format.description(), turn.promptTokens(), rate(turn.promptTokens(), turn.promptNanos()),
                turn.generatedTokens(), rate(turn.generatedTokens(), turn.generateNanos()),
                turn.stopReason().name().toLowerCase(Locale.ROOT).replace('_', ' '), sampler.seed(),
                generator.model().backend().description()));
        err.flush();
    }

    private static double rate(long tokens, long nanos) {
        return nanos == 0 ? 0 : tokens * 1e9 / nanos;
    }
}
