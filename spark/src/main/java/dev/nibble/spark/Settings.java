package dev.nibble.spark;

import dev.nibble.runtime.SamplerSettings;
import java.io.Serializable;
import java.util.List;

/**
 * What every task of one generation needs, made on the driver and shipped with the tasks; the same options as
 * {@code nibble batch}'s.
 *
 * @param model      the model file as the driver saw it
 * @param device     auto, cpu, cuda or cuda:N
 * @param threads    CPU threads of the executor's model (0: one per CPU the executor's process may use)
 * @param parallel   sequences one task's engine runs together
 * @param context    positions one sequence may use (0: what the longest request of the partition needs)
 * @param maxTokens  new tokens at most for requests without max_tokens (-1: until an end token or a full context)
 * @param sampler    sampling for fields a request does not give, with the seed of requests that give none
 * @param stop       stop strings of every request
 * @param chat       answer each prompt as a user message in the model's chat format
 * @param system     a system prompt for requests answered in the chat format that have none (null: none)
 */
record Settings(ModelFile model, String device, int threads, int parallel, int context, int maxTokens,
                Sampler sampler, List<String> stop, boolean chat, String system) implements Serializable {

    Settings {
        stop = List.copyOf(stop);
    }

    /** {@link SamplerSettings}, which is not serializable, as a record that is. */
    record Sampler(float temperature, int topK, float topP, float minP, float repeatPenalty, float frequencyPenalty,
                   float presencePenalty, long seed) implements Serializable {

        Sampler(SamplerSettings s) {
            this(s.temperature(), s.topK(), s.topP(), s.minP(), s.repeatPenalty(), s.frequencyPenalty(),
                    s.presencePenalty(), s.seed());
        }

        SamplerSettings settings() {
            return new SamplerSettings(temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty,
                    seed);
        }
    }
}
