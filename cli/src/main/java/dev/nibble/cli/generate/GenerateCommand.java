package dev.nibble.cli.generate;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.cli.DeviceOptions;
import dev.nibble.cli.InputFiles;
import dev.nibble.cli.LlamaCppFlags;
import dev.nibble.cli.ModelOption;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Generator;
import dev.nibble.runtime.KvCache;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Sampler;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatHistory;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.chat.ChatSession;
import dev.nibble.runtime.chat.ConversationFile;
import dev.nibble.runtime.chat.ModelChatEngine;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code nibble generate}: continues a prompt, streaming the text to stdout and a timing line to stderr; with --chat or
 * --messages, answers in the model's chat format instead; with --json, prints one JSON object for scripts.
 */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Continues PROMPT with the model, printing the prompt and then the text as it is generated.",
            "Sampling runs in Hugging Face's order: penalties, temperature, top-k, top-p, min-p. --temperature 0 is greedy.",
            "Sampling values not given are the model's own defaults (its generation_config.json, stored by nibble "
                    + "convert), else llama.cpp's; the timing line says which.",
            "Stops at an end-of-generation token, a --stop string (not printed), -n new tokens or a full context.",
            "With --chat (or --system, or --messages FILE), answers in the model's chat format and prints only the answer."})
public final class GenerateCommand implements Callable<Integer> {

    private static final ObjectMapper JSON = new ObjectMapper();

    @Mixin
    ModelOption model;

    @Option(names = {"-p", "--prompt"}, paramLabel = "PROMPT",
            description = "Text to continue (may be empty); with --chat, the user's message.")
    String prompt;

    @Option(names = {"-f", "--file"}, paramLabel = "FILE", description = "Read PROMPT from this UTF-8 file, exactly as it is.")
    Path file;

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

    @Option(names = {"-n", "--n-predict", "--predict"}, defaultValue = "-1", paramLabel = "N",
            description = "New tokens at most (-1: until an end token or the context is full; default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Mixin
    SamplingOptions sampling;

    @Option(names = "--stop", paramLabel = "TEXT", description = "Stop before this text (repeatable).")
    List<String> stop = List.of();

    @Mixin
    DeviceOptions device;

    @Option(names = {"-c", "--ctx-size", "--ctx"}, defaultValue = "0", paramLabel = "N",
            description = "Context size in tokens (0: the model's, capped by free memory; default: $NIBBLE_CTX, else 0).")
    int ctx;

    @Option(names = "--json", description = "Print one JSON object when done (text, finish_reason, tokens, timings, seed, "
            + "sampling, model) instead of the text as it comes; no timing line.")
    boolean json;

    @Option(names = "--no-display-prompt", description = "Print only the generated text, not the prompt before it.")
    boolean noDisplayPrompt;

    @Option(names = "--quiet", description = "No device, context or timing lines on stderr (warnings and errors still).")
    boolean quiet;

    @Mixin
    LlamaCppFlags llamaCpp;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        boolean chatMode = chat || system != null || messages != null;
        if ((prompt != null ? 1 : 0) + (file != null ? 1 : 0) + (messages != null ? 1 : 0) != 1) {
            throw new ParameterException(spec.commandLine(),
                    "give -p PROMPT or --messages FILE (one of them); -f FILE reads PROMPT from a file");
        }
        if (chatMode && !stop.isEmpty()) {
            throw new ParameterException(spec.commandLine(), "--stop is for plain generation; in chat the template's markers stop");
        }
        if (ctx < 0) {
            throw new ParameterException(spec.commandLine(), "--ctx must be 0 (the model's, as memory allows) or more, is " + ctx);
        }
        Path gguf = model.gguf();
        String text = prompt != null ? prompt : file != null ? readPrompt(file) : null;
        List<ChatMessage> conversation = chatMode ? conversation(text) : null;
        long actualSeed = sampling.seed();
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        PrintWriter info = quiet ? new PrintWriter(Writer.nullWriter()) : err;
        try (Generator generator = Generator.open(gguf, device.open(info), ctx, DeviceOptions.loadProgress(info))) {
            DeviceOptions.reportPlacement(generator.model(), info);
            SamplingOptions.Resolved sampler = sampling.resolve(generator.model().file().metadata(), actualSeed);
            int trained = generator.model().config().contextLength();
            if (ctx == 0 && generator.contextSize() < trained) {
                Model m = generator.model();
                long budget = m.cacheBudget(Model.hostFreeMemory(), Math.min(trained, KvCache.MAX_DEFAULT_CONTEXT));
                info.println("nibble: " + KvCache.defaultCapacityNote(m.config(), m.cacheBytesPerPosition(), budget,
                        generator.contextSize()));
            } else if (ctx > trained) {
                err.println("nibble: warning: --ctx " + ctx + " is beyond the " + trained
                        + " tokens the model was trained on; text past that point may degrade");
            }
            if (chatMode) {
                answer(generator, gguf, conversation, sampler, out, err, info);
                return 0;
            }
            if (!json && !noDisplayPrompt) {
                out.print(text);
                out.flush();
            }
            GenerationResult r = generator.generate(text, new GenerationSettings(maxTokens, sampler.settings(), stop),
                    stream(out));
            if (r.stopReason() == GenerationResult.StopReason.CONTEXT_FULL) {
                err.println("nibble: the context of " + generator.contextSize()
                        + " tokens is full; generation stopped (a larger --ctx allows more)");
            }
            if (json) {
                ObjectNode o = result(r.text(), r.stopReason().name(), r.promptTokens(), r.generatedTokens(),
                        r.promptNanos(), r.generationNanos(), sampler, gguf, generator);
                out.println(JSON.writeValueAsString(o));
            } else {
                out.println();
            }
            out.flush();
            if (!json) {
                info.println(String.format(Locale.ROOT,
                        "nibble: prompt %d tokens, %.2f tok/s; generation %d tokens, %.2f tok/s; stop: %s; seed %d; %s; %s",
                        r.promptTokens(), r.promptTokensPerSecond(), r.generatedTokens(), r.generationTokensPerSecond(),
                        r.stopReason().name().toLowerCase(Locale.ROOT).replace('_', ' '), actualSeed,
                        generator.model().description(), sampler.description()));
            }
            err.flush();
        }
        return 0;
    }

    /** Streams text to stdout as it comes, or, with --json, keeps it for the object at the end. */
    private Consumer<String> stream(PrintWriter out) {
        return json ? text -> { } : text -> {
            out.print(text);
            out.flush();
        };
    }

    /** The -f file: a regular file (a FIFO would block), strictly UTF-8 (an error names the byte), at most 64 MiB. */
    private static String readPrompt(Path file) throws IOException {
        return InputFiles.readUtf8(file, "-f", "a UTF-8 text file with the prompt", InputFiles.TEXT_LIMIT);
    }

    /** The --json object: what was generated, why it stopped, how many tokens, how fast, with what settings. */
    private ObjectNode result(String text, String stopReason, int promptTokens, int generatedTokens, long promptNanos,
                              long generationNanos, SamplingOptions.Resolved sampler, Path gguf, Generator generator) {
        ObjectNode o = JSON.createObjectNode();
        o.put("text", text);
        o.put("finish_reason", stopReason.toLowerCase(Locale.ROOT));
        o.putObject("tokens").put("prompt", promptTokens).put("generated", generatedTokens);
        o.putObject("timings")
                .put("prompt_ms", promptNanos / 1e6)
                .put("generation_ms", generationNanos / 1e6)
                .put("prompt_tokens_per_second", rate(promptTokens, promptNanos))
                .put("generation_tokens_per_second", rate(generatedTokens, generationNanos));
        o.put("seed", sampler.settings().seed());
        SamplerSettings s = sampler.settings();
        o.putObject("sampling")
                .put("temperature", s.temperature()).put("top_k", s.topK()).put("top_p", s.topP()).put("min_p", s.minP())
                .put("repeat_penalty", s.repeatPenalty()).put("frequency_penalty", s.frequencyPenalty())
                .put("presence_penalty", s.presencePenalty())
                .put("source", sampler.description().substring("sampling: ".length()));
        o.put("model", gguf.getFileName().toString());
        o.put("backend", generator.model().description());
        return o;
    }

    /** The conversation to answer: the --messages file, or the system prompt and PROMPT. */
    private List<ChatMessage> conversation(String text) throws IOException {
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
        out.add(ChatMessage.user(text));
        return out;
    }

    /** --chat: streams the model's answer in its chat format (or prints the --json object), and a timing line to stderr. */
    private void answer(Generator generator, Path gguf, List<ChatMessage> conversation, SamplingOptions.Resolved sampler,
                        PrintWriter out, PrintWriter err, PrintWriter info) throws IOException {
        String own = generator.model().file().metadata().findString(VocabularyGguf.CHAT_TEMPLATE).orElse(null);
        ModelChatFormat format = ModelChatFormat.of(own, generator.tokenizer(), template);
        ChatSession session = new ChatSession(format.format(), new ModelChatEngine(generator.model(), generator.cache()),
                new Sampler(sampler.settings())::sample, new ChatHistory(null), Math.max(0, maxTokens), 1);
        ChatSession.Turn turn = session.complete(conversation, stream(out));
        if (turn.stopReason() == ChatSession.StopReason.CONTEXT_FULL) {
            err.println("nibble: the context of " + generator.contextSize()
                    + " tokens is full; generation stopped (a larger --ctx allows more)");
        }
        if (json) {
            ObjectNode o = result(turn.answer(), turn.stopReason().name(), turn.promptTokens(), turn.generatedTokens(),
                    turn.promptNanos(), turn.generateNanos(), sampler, gguf, generator);
            o.put("template", format.description());
            out.println(JSON.writeValueAsString(o));
        } else {
            out.println();
        }
        out.flush();
        if (!json) {
            info.println(String.format(Locale.ROOT,
                    "nibble: template: %s; prompt %d tokens, %.2f tok/s; answer %d tokens, %.2f tok/s; stop: %s; seed %d; %s; %s",
                    format.description(), turn.promptTokens(), rate(turn.promptTokens(), turn.promptNanos()),
                    turn.generatedTokens(), rate(turn.generatedTokens(), turn.generateNanos()),
                    turn.stopReason().name().toLowerCase(Locale.ROOT).replace('_', ' '), sampler.settings().seed(),
                    generator.model().description(), sampler.description()));
        }
        err.flush();
    }

    private static double rate(long tokens, long nanos) {
        return nanos == 0 ? 0 : tokens * 1e9 / nanos;
    }
}
