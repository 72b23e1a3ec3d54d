package dev.nibble.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.chat.ConversationFile;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code nibble tokenize}: shows the token ids a model's tokenizer gives a text, or the text of ids, or the prompt a
 * conversation becomes through the model's chat template.
 */
@Command(name = "tokenize",
        mixinStandardHelpOptions = true,
        description = {"Prints the token ids of TEXT (or of a file, or of standard input) with a model's tokenizer;",
            "with --detokenize, prints the text of the ids given instead;",
            "with --messages, prints the prompt a conversation becomes through the model's chat template, and its ids."})
final class TokenizeCommand implements Callable<Integer> {

    private static final ObjectMapper JSON = new ObjectMapper();

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "MODEL",
            description = "A Hugging Face model folder (tokenizer.model or tokenizer.json) or a .gguf file "
                    + "(default: $NIBBLE_MODEL).")
    Path model;

    @Parameters(arity = "0..1", paramLabel = "TEXT", description = "The text (or, with --detokenize, the ids); default: standard input.")
    String text;

    @Option(names = {"-f", "--file"}, paramLabel = "FILE", description = "Read the text (or ids) from this UTF-8 file, exactly as it is "
            + "(at most 64 MiB, as standard input).")
    Path file;

    @Option(names = "--pieces", description = "Show each token's piece next to its id.")
    boolean pieces;

    @Option(names = "--json", description = "Print JSON: {\"ids\": [...]} (with \"pieces\" under --pieces), or {\"text\": ...}.")
    boolean json;

    @Option(names = "--no-bos", description = "Do not add the BOS (or EOS) token the model's tokenizer adds.")
    boolean noBos;

    @Option(names = "--special", description = "Recognise special-token strings such as <s> or <|eot_id|> in the text; "
            + "with --detokenize, print control tokens.")
    boolean special;

    @Option(names = "--detokenize", description = "Turn ids (separated by spaces or commas) back into text.")
    boolean detokenize;

    @Option(names = "--messages", paramLabel = "FILE",
            description = "A conversation as JSON ([{\"role\": \"user\", \"content\": \"...\"}, ...]): print the prompt "
                    + "the chat template makes of it, then its ids.")
    Path messages;

    @Option(names = "--add-generation-prompt",
            description = "With --messages: end the prompt with the start of the assistant's answer.")
    boolean addGenerationPrompt;

    @Option(names = "--template", paramLabel = "NAME", defaultValue = ModelChatFormat.AUTO,
            description = "With --messages: the chat template: auto (the model's own, else one matching its vocabulary), "
                    + "llama2, llama3 or chatml (default ${DEFAULT-VALUE}).")
    String template;

    @Override
    public Integer call() throws IOException {
        ModelOption.check(model, true, spec);
        if (messages != null) {
            return conversation();
        }
        String input = input();
        Tokenizer tokenizer = Tokenizer.from(loadVocabulary(model));
        PrintWriter out = spec.commandLine().getOut();
        if (detokenize) {
            String decoded = tokenizer.decode(parseIds(input), !special);
            if (json) {
                out.println(JSON.writeValueAsString(JSON.createObjectNode().put("text", decoded)));
            } else {
                out.println(decoded);
            }
            out.flush();
            return 0;
        }
        Vocabulary vocab = tokenizer.vocabulary();
        int[] ids = tokenizer.encode(input, !noBos && vocab.addBos(), special);
        if (!noBos && vocab.addEos() && vocab.eosId() >= 0) {
            ids = Arrays.copyOf(ids, ids.length + 1);
            ids[ids.length - 1] = vocab.eosId();
        }
        printIds(out, tokenizer, ids, JSON.createObjectNode());
        return 0;
    }

    /** --messages: the rendered prompt, then its ids; special tokens only where the template put them. */
    private int conversation() throws IOException {
        if (text != null || file != null || detokenize || noBos || special) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--messages takes no TEXT, --file, --detokenize, --no-bos or --special (the template decides)");
        }
        List<ChatMessage> conversation = ConversationFile.read(messages);
        Tokenizer tokenizer = Tokenizer.from(loadVocabulary(model));
        ModelChatFormat chat = ModelChatFormat.load(model, tokenizer, template);
        String prompt = chat.format().render(conversation, addGenerationPrompt);
        int[] ids = chat.format().encode(conversation, addGenerationPrompt);
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            printIds(out, tokenizer, ids, JSON.createObjectNode().put("template", chat.description()).put("prompt", prompt));
        } else {
            out.println("--- prompt (template: " + chat.description() + ") ---");
            out.println(prompt);
            out.println("--- " + ids.length + " tokens ---");
            printIds(out, tokenizer, ids, null);
        }
        return 0;
    }

    /** Prints ids as JSON (into {@code node}, with the fields it has) when --json, else as text. */
    private void printIds(PrintWriter out, Tokenizer tokenizer, int[] ids, ObjectNode node) throws IOException {
        if (json) {
            Arrays.stream(ids).forEach(node.putArray("ids")::add);
            if (pieces) {
                Arrays.stream(ids).forEach(id -> node.withArray("pieces").add(tokenizer.piece(id)));
            }
            out.println(JSON.writeValueAsString(node));
        } else if (pieces) {
            for (int id : ids) {
                // JSON quoting keeps spaces, tabs and newlines inside a piece visible.
                out.println(id + "\t" + JSON.writeValueAsString(tokenizer.piece(id)));
            }
        } else {
            StringBuilder line = new StringBuilder();
            for (int id : ids) {
                line.append(line.isEmpty() ? "" : " ").append(id);
            }
            out.println(line);
        }
        out.flush();
    }

    private String input() throws IOException {
        if (text != null && file != null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "give TEXT or --file, not both");
        }
        if (text != null) {
            return text;
        }
        if (file != null) {
            return InputFiles.readUtf8(file, "-f", "a UTF-8 text file", InputFiles.TEXT_LIMIT);
        }
        // System.in, not descriptor 0: Nibble.main makes it empty when standard input was closed
        return InputFiles.readUtf8(System.in, "standard input", InputFiles.TEXT_LIMIT);
    }

    /** The vocabulary of a Hugging Face folder or of a GGUF file. */
    static Vocabulary loadVocabulary(Path model) throws IOException {
        if (Files.isDirectory(model)) {
            return HuggingFaceVocabulary.load(model);
        }
        if (Files.isRegularFile(model)) {
            try (GgufFile gguf = GgufFile.open(model)) {
                return VocabularyGguf.read(gguf);
            }
        }
        throw new IOException(model + ": no such model folder or .gguf file");
    }

    private static int[] parseIds(String input) {
        String trimmed = input.replaceAll("[\\[\\],]", " ").trim();
        if (trimmed.isEmpty()) {
            return new int[0];
        }
        return Arrays.stream(trimmed.split("\\s+")).mapToInt(s -> {
            try {
                return Integer.parseInt(s);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("'" + s + "' is not a token id");
            }
        }).toArray();
    }
}
