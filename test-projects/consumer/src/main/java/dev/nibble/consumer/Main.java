package dev.nibble.consumer;

import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.LanguageModel;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatMessage;
import java.nio.file.Path;
import java.util.List;

/** Loads the model named by the first argument, generates and chats, as an application depending on nibble would. */
public final class Main {

    private Main() {}

    public static void main(String[] args) {
        Path model = Path.of(args[0]);
        try (LanguageModel lm = LanguageModel.load(model).device("cpu").threads(2).contextSize(256).parallel(1).open()) {
            GenerationResult story = lm.generate("The jury", GenerationSettings.of(16, SamplerSettings.greedy()));
            GenerationResult answer = lm.chat(List.of(ChatMessage.user("Who won the election?")),
                    GenerationSettings.of(8, SamplerSettings.greedy()));
            System.out.println("generated " + story.generatedTokens() + " tokens: " + story.text().strip());
            System.out.println("answered " + answer.generatedTokens() + " tokens: " + answer.text().strip());
            System.out.println("nibble module: " + LanguageModel.class.getModule().getName());
        }
    }
}
