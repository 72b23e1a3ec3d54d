package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * test-data/chat/hf-chat-refs.json: what transformers 5.17's {@code apply_chat_template} renders, and its ids, for six
 * conversations with and without the generation prompt, on the tiny model's template, Llama 3's and ChatML. Each is
 * checked with the model's own template and with the matching built-in one.
 */
class HuggingFaceChatRefsTest {

    @Test
    void renderedTextAndIdsEqualHuggingFaces() throws IOException {
        JsonNode refs = ChatTestData.json("chat/hf-chat-refs.json");
        String chatml = refs.get("chatml_template").asText();
        int checkedIds = 0;
        for (JsonNode c : refs.get("cases")) {
            String tokenizerName = c.get("tokenizer").asText();
            String where = tokenizerName + " / " + c.get("conversation").asText() + " / agp " + c.get("add_generation_prompt");
            boolean llama3 = c.get("path").asText().equals("tokenizers/llama3");
            boolean isChatMl = tokenizerName.startsWith("chatml");
            Tokenizer tokenizer = llama3 ? ChatTestData.llama3Tokenizer() : ChatTestData.tinyTokenizer();
            String own = isChatMl ? chatml : llama3 ? ChatTestData.llama3Template() : ChatTestData.tinyTemplate();
            BuiltInTemplate builtIn = isChatMl ? BuiltInTemplate.CHATML : llama3 ? BuiltInTemplate.LLAMA3 : BuiltInTemplate.LLAMA2;
            List<ChatMessage> messages = ChatTestData.messages(c.get("messages"));
            boolean generationPrompt = c.get("add_generation_prompt").asBoolean();
            for (ChatFormat format : List.of(ChatFormat.forModel(tokenizer, own, null), ChatFormat.forModel(tokenizer, null, builtIn))) {
                if (c.has("error")) {
                    assertThrows(ChatTemplateException.class, () -> format.render(messages, generationPrompt), where);
                    continue;
                }
                // Llama 3's official template here always ends with the generation prompt; the built-in one asks.
                if (llama3 && format.template().source().equals(BuiltInTemplate.LLAMA3.source().strip()) && !generationPrompt) {
                    assertTrue(c.get("text").asText().startsWith(format.render(messages, false)), where);
                    continue;
                }
                assertEquals(c.get("text").asText(), format.render(messages, generationPrompt), where);
                int[] ids = format.encode(messages, generationPrompt);
                if (isChatMl) {
                    continue;
                }
                if (c.get("conversation").asText().equals("user_types_markers")) {
                    // Hugging Face turns the typed "</s>" into the EOS token; nibble keeps the user's text as text.
                    assertFalse(Arrays.equals(ChatTestData.ids(c.get("ids")), ids), where);
                    assertEquals(1, Arrays.stream(ids).filter(id -> id == tokenizer.vocabulary().bosId()).count(), where);
                    continue;
                }
                assertArrayEquals(ChatTestData.ids(c.get("ids")), ids, where);
                checkedIds++;
            }
        }
        assertTrue(checkedIds >= 30, "ids compared in " + checkedIds + " cases");
    }
}
