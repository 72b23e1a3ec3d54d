package dev.nibble.runtime;

import java.util.List;

/**
 * The outcome of one generation call.
 *
 * @param text             the generated text (without the prompt and without a stop string)
 * @param promptTokens     tokens the prompt encoded to (BOS included)
 * @param generatedTokens  tokens generated (an end token and those of a stop string included)
 * @param promptNanos      time spent running the prompt
 * @param generationNanos  time spent generating after the prompt
 * @param logprobs         each generated token with its log-probability under the model (before penalties and
 *                         temperature), when the settings asked for them; otherwise empty
 */
public record GenerationResult(String text, int promptTokens, int generatedTokens, StopReason stopReason,
                               long promptNanos, long generationNanos, List<TokenLogprob> logprobs) {

    /** A generated token: its id, its text and its natural-log probability. */
    public record TokenLogprob(int token, String text, double logprob) {
    }

    public GenerationResult {
        logprobs = List.copyOf(logprobs);
    }

    /** A result without log-probabilities. */
    public GenerationResult(String text, int promptTokens, int generatedTokens, StopReason stopReason,
                            long promptNanos, long generationNanos) {
        this(text, promptTokens, generatedTokens, stopReason, promptNanos, generationNanos, List.of());
    }

    /** Why generation ended. */
    public enum StopReason {
        /** The model produced one of its end-of-generation tokens. */
        END_TOKEN,
        /** The output reached one of the stop strings. */
        STOP_STRING,
        /** The requested number of new tokens was generated. */
        MAX_TOKENS,
        /** Every position of the context is used. */
        CONTEXT_FULL,
        /** Generation was cancelled (Ctrl-C, a client gone, the engine closed). */
        CANCELLED
    }

    /** Prompt tokens per second. */
    public double promptTokensPerSecond() {
        return promptNanos == 0 ? 0 : promptTokens * 1e9 / promptNanos;
    }

    /** Generated tokens per second. */
    public double generationTokensPerSecond() {
        return generationNanos == 0 ? 0 : generatedTokens * 1e9 / generationNanos;
    }
}
