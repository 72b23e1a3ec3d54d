package dev.nibble.runtime;

import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.PromptTooLongException;
import dev.nibble.runtime.chat.TokenSampler;
import dev.nibble.runtime.tokenizer.StreamingDecoder;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.IntFunction;
import java.util.function.IntPredicate;

/**
 * The generation loop of one sequence, the only one there is: {@code generate}, {@code chat}, the batch engine and a
 * server all run it. Whoever drives it runs the prompt, passes the logits after its last token to {@link #accept}, and
 * while that returns true runs {@link #next()} and passes the logits after it. It samples, streams text (never a part
 * of a stop string), and applies the stop rules: an end token, a stop string, the token limit, a full context, or
 * {@link #cancel()}.
 *
 * <p>Not thread-safe, except {@link #cancel()}: one sequence belongs to one driver at a time.
 */
public final class Generation {

    private final int[] prompt;
    private final int maxTokens;
    private final TokenSampler sampler;
    private final IntPredicate endToken;
    private final StreamingDecoder decoder;
    private final StopStringFilter filter;
    private final int contextSize;
    private final int[] history;
    private int length;
    private int generated;
    private int accepted;
    private int next = -1;
    private int endTokenId = -1;
    private GenerationResult.StopReason reason;
    private volatile boolean cancelled;
    private List<GenerationResult.TokenLogprob> logprobs; // null: not asked for
    private IntFunction<String> tokenText;
    private final long created = System.nanoTime();
    private long promptDone;
    private long finished;

    /**
     * @param prompt      the tokens the driver runs first (at least one, fewer than {@code contextSize})
     * @param maxTokens   new tokens at most (negative: no limit)
     * @param endToken    the tokens that end generation (they are not part of the text)
     * @param stopStrings generation ends before the first of these in the text
     * @param decoder     turns tokens into text; primed with the prompt when the text continues it
     * @param contextSize positions the sequence's cache holds: a token sampled when it is full ends generation
     * @param output      receives each piece of text as soon as it cannot be part of a stop string
     */
    public Generation(int[] prompt, int maxTokens, TokenSampler sampler, IntPredicate endToken,
                      List<String> stopStrings, StreamingDecoder decoder, int contextSize, Consumer<String> output) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("the prompt has no tokens");
        }
        if (prompt.length >= contextSize) {
            throw new PromptTooLongException("the prompt is " + prompt.length + " tokens but the context holds "
                    + contextSize + " (prompt and output together); shorten the prompt or raise --ctx");
        }
        this.prompt = prompt.clone();
        this.maxTokens = maxTokens;
        this.sampler = sampler;
        this.endToken = endToken;
        this.decoder = decoder;
        this.filter = new StopStringFilter(stopStrings, output);
        this.contextSize = contextSize;
        this.history = Arrays.copyOf(prompt, contextSize + 1); // the last token is sampled but never run
        this.length = prompt.length;
    }

    /**
     * A continuation of plain text: the decoder is primed with the prompt (so the first new token keeps its leading
     * space, as when prompt and output are decoded together); ends at one of the model's end tokens.
     */
    public static Generation continuing(int[] prompt, GenerationSettings settings, Tokenizer tokenizer, int[] endIds,
                                        int contextSize, Consumer<String> output) {
        StreamingDecoder decoder = tokenizer.streamingDecoder(true);
        for (int id : prompt) {
            decoder.next(id);
        }
        Generation g = new Generation(prompt, settings.maxTokens(), new Sampler(settings.sampler())::sample,
                id -> contains(endIds, id), settings.stopStrings(), decoder, contextSize, output);
        return settings.logprobs() ? g.recordLogprobs(tokenizer::piece) : g;
    }

    /**
     * An answer to a conversation rendered by {@code format} (the prompt ends with the assistant's header): ends at
     * an end-of-turn or other control token, at a template marker written as text, or at one of the settings' stop
     * strings.
     */
    public static Generation answering(int[] prompt, GenerationSettings settings, TokenSampler sampler,
                                       ChatFormat format, int contextSize, Consumer<String> output) {
        List<String> stops = new ArrayList<>(format.stopStrings());
        stops.addAll(settings.stopStrings());
        Generation g = new Generation(prompt, settings.maxTokens(), sampler,
                id -> format.isEndOfTurn(id) || format.isControl(id), stops, format.tokenizer().streamingDecoder(true),
                contextSize, output);
        return settings.logprobs() ? g.recordLogprobs(format.tokenizer()::piece) : g;
    }

    /** Makes the result list each generated token, with {@code text} as its text, and its log-probability. */
    public Generation recordLogprobs(IntFunction<String> text) {
        logprobs = new ArrayList<>();
        tokenText = text;
        return this;
    }

    /** log softmax(logits)[token], in double. */
    static double logSoftmax(float[] logits, int token) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (float v : logits) {
            sum += Math.exp(v - max);
        }
        return logits[token] - max - Math.log(sum);
    }

    private static boolean contains(int[] ids, int id) {
        for (int x : ids) {
            if (x == id) {
                return true;
            }
        }
        return false;
    }

    /** The prompt's tokens, which the driver runs before the first {@link #accept}. */
    public int[] prompt() {
        return prompt.clone();
    }

    /** Prompt tokens. */
    public int promptLength() {
        return prompt.length;
    }

    /** New tokens at most (negative: no limit). */
    public int maxTokens() {
        return maxTokens;
    }

    /**
     * Takes the logits after the last token run (the prompt's, then {@link #next()}'s): samples a token and applies
     * the stop rules. Returns true when generation goes on, and {@link #next()} is then the token to run.
     */
    public boolean accept(float[] logits) {
        if (reason != null) {
            throw new IllegalStateException("this generation has ended (" + reason + ")");
        }
        if (accepted++ == 0) {
            promptDone = System.nanoTime();
        }
        if (cancelled) {
            return finish(GenerationResult.StopReason.CANCELLED);
        }
        if (maxTokens >= 0 && generated == maxTokens) {
            return finish(GenerationResult.StopReason.MAX_TOKENS);
        }
        int token = sampler.sample(logits, history, length);
        generated++;
        if (logprobs != null) {
            logprobs.add(new GenerationResult.TokenLogprob(token, tokenText.apply(token), logSoftmax(logits, token)));
        }
        if (endToken.test(token)) {
            endTokenId = token;
            return finish(GenerationResult.StopReason.END_TOKEN);
        }
        history[length++] = token;
        if (filter.accept(decoder.next(token))) {
            return finish(GenerationResult.StopReason.STOP_STRING);
        }
        if (length - 1 == contextSize) { // every position holds a token: this one cannot be run
            return finish(GenerationResult.StopReason.CONTEXT_FULL);
        }
        if (maxTokens >= 0 && generated == maxTokens) {
            return finish(GenerationResult.StopReason.MAX_TOKENS);
        }
        next = token;
        return true;
    }

    private boolean finish(GenerationResult.StopReason why) {
        reason = why;
        if (why != GenerationResult.StopReason.STOP_STRING && !filter.accept(decoder.finish())) {
            filter.flush();
        }
        finished = System.nanoTime();
        return false;
    }

    /** The token to run next, after {@link #accept} returned true. */
    public int next() {
        if (reason != null || next < 0) {
            throw new IllegalStateException("no token to run: " + (reason != null ? "generation has ended" : "nothing sampled yet"));
        }
        return next;
    }

    /** Ends generation at the next {@link #accept}; safe from any thread (Ctrl-C, a client gone). */
    public void cancel() {
        cancelled = true;
    }

    public boolean isDone() {
        return reason != null;
    }

    /** The end token that stopped generation, or -1. */
    public int endTokenId() {
        return endTokenId;
    }

    /** The tokens now in the sequence's cache: the prompt and every generated token that was run. */
    public int[] tokensInCache() {
        int ran = accepted == 0 ? 0 : prompt.length + accepted - 1;
        return Arrays.copyOf(history, Math.min(ran, length));
    }

    /** The outcome, once {@link #isDone()}. */
    public GenerationResult result() {
        if (reason == null) {
            throw new IllegalStateException("generation has not ended");
        }
        return new GenerationResult(filter.text(), prompt.length, generated, reason, promptDone - created,
                finished - promptDone, logprobs == null ? List.of() : logprobs);
    }
}
