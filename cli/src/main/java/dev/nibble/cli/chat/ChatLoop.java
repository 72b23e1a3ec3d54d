package dev.nibble.cli.chat;

import dev.nibble.runtime.chat.ChatHistory;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.chat.ChatSession;
import dev.nibble.runtime.chat.ConversationFile;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The interactive part of {@code nibble chat}: reads the user's lines, runs slash commands, streams answers. On a
 * terminal everything goes to the screen; from a pipe only the answers go to standard output (one a line, so that a
 * script reads exactly them), status lines go to standard error, and a line starting with "/" is a message like any
 * other, since a script's text is not a command.
 */
final class ChatLoop {

    static final String HELP = """
            /reset          forget the conversation (the system prompt stays)
            /system TEXT    set the system prompt (no TEXT: remove it)
            /save FILE      save the conversation as JSON
            /load FILE      load a conversation saved as JSON
            /stats          token counts and speeds
            /help           this list
            /quit           leave (so does Ctrl-D); Ctrl-C stops an answer""";

    private final ChatSession session;
    private final LineSource input;
    private final PrintWriter out;
    private final PrintWriter status;
    private final boolean commands;
    private final String prompt;
    private final Stats stats = new Stats();
    private boolean toldAboutTrimming;

    /** A chat on a terminal: slash commands run, status lines go to {@code out} with the answers. */
    ChatLoop(ChatSession session, LineSource input, PrintWriter out, String prompt) {
        this(session, input, out, out, true, prompt);
    }

    /**
     * @param status   where lines about the chat go ("(answer cut at the token limit)", command results)
     * @param commands whether a line starting with "/" is a command (on a terminal) or a message (from a pipe)
     * @param prompt   what to show before each user line ("" when reading a pipe)
     */
    ChatLoop(ChatSession session, LineSource input, PrintWriter out, PrintWriter status, boolean commands,
             String prompt) {
        this.session = session;
        this.input = input;
        this.out = out;
        this.status = status;
        this.commands = commands;
        this.prompt = prompt;
        input.onInterrupt(this::interrupt);
    }

    /** What Ctrl-C does: ends the answer being written; the chat goes on. */
    void interrupt() {
        session.interrupt();
    }

    /** Reads and answers lines until /quit or the end of input. */
    void run() throws IOException {
        String line;
        while ((line = input.readLine(prompt)) != null) {
            String trimmed = line.strip();
            if (trimmed.isEmpty()) {
                continue;
            }
            if (commands && trimmed.startsWith("/")) {
                if (!command(trimmed)) {
                    return;
                }
            } else {
                answer(line);
            }
            out.flush();
            status.flush();
        }
    }

    private void answer(String text) throws IOException {
        ChatSession.Turn turn;
        try {
            turn = session.send(text, piece -> {
                out.print(piece);
                out.flush();
            });
        } catch (IllegalArgumentException e) {
            // A message too long for the context, or a template that refuses the conversation.
            status.println("(" + e.getMessage() + ")");
            if (status != out) {
                out.println(); // piped: still one line per message, so a script's answers stay in step
            }
            return;
        }
        out.println();
        switch (turn.stopReason()) {
            case INTERRUPTED -> status.println("(stopped)");
            case MAX_TOKENS -> status.println("(answer cut at the token limit)");
            case CONTEXT_FULL -> status.println("(the context window of " + session.contextSize() + " tokens is full; /reset to go on)");
            default -> { }
        }
        if (turn.droppedMessages() > 0 && !toldAboutTrimming) {
            status.println("(older messages were dropped to fit the " + session.contextSize() + "-token context; the system prompt stays)");
            toldAboutTrimming = true;
        }
        stats.add(turn);
        if (!commands) { // piped: what /stats would say about this answer, beside the answers rather than among them
            status.println(stats.lastAnswer());
        }
    }

    /** Runs a slash command; false when the chat should end. */
    private boolean command(String line) throws IOException {
        int space = line.indexOf(' ');
        String name = (space < 0 ? line : line.substring(0, space)).toLowerCase(Locale.ROOT);
        String argument = space < 0 ? "" : line.substring(space + 1).strip();
        ChatHistory history = session.history();
        switch (name) {
            case "/quit", "/exit" -> {
                return false;
            }
            case "/help" -> status.println(HELP);
            case "/reset" -> {
                history.clear();
                toldAboutTrimming = false;
                status.println("(conversation cleared)");
            }
            case "/system" -> {
                history.setSystem(argument.isEmpty() ? null : argument);
                status.println(argument.isEmpty() ? "(system prompt removed)" : "(system prompt set)");
            }
            case "/save" -> save(argument);
            case "/load" -> load(argument);
            case "/stats" -> status.println(stats.describe(session));
            default -> status.println("(unknown command " + name + "; /help lists them)");
        }
        return true;
    }

    /** Saves the conversation; a file that cannot be written is one line, and the chat goes on. */
    private void save(String argument) {
        if (argument.isEmpty()) {
            status.println("(usage: /save FILE)");
            return;
        }
        try {
            List<ChatMessage> messages = session.history().messages();
            ConversationFile.write(Path.of(argument), messages);
            status.println("(saved " + messages.size() + " messages to " + argument + ")");
        } catch (IOException | RuntimeException e) {
            status.println("(" + problem(argument, e) + ")");
        }
    }

    private void load(String argument) {
        if (argument.isEmpty()) {
            status.println("(usage: /load FILE)");
            return;
        }
        try {
            List<ChatMessage> messages = ConversationFile.read(Path.of(argument));
            ChatHistory loaded = ChatHistory.of(messages);
            if (loaded.turnCount() % 2 != 0) {
                status.println("(" + argument + " ends with a user message; a saved chat ends with an answer)");
                return;
            }
            ChatHistory history = session.history();
            history.clear();
            history.setSystem(loaded.system().orElse(null));
            for (ChatMessage m : loaded.messages()) {
                switch (m.role()) {
                    case ChatMessage.USER -> history.addUser(m.content());
                    case ChatMessage.ASSISTANT -> history.addAssistant(m.content());
                    default -> { }
                }
            }
            toldAboutTrimming = false;
            status.println("(loaded " + messages.size() + " messages)");
        } catch (IOException | RuntimeException e) {
            // Whatever the file, the conversation so far is kept and the chat goes on.
            status.println("(" + problem(argument, e) + ")");
        }
    }

    /** One line for a failed /save or /load: the exception's message, naming the file when it does not already. */
    private static String problem(String file, Exception e) {
        String message = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        return message.contains(file) ? message : file + ": " + message;
    }

    /** Totals over the session, for /stats. */
    private static final class Stats {
        private int turns;
        private long promptTokens;
        private long reusedTokens;
        private long generatedTokens;
        private long promptNanos;
        private long generateNanos;
        private ChatSession.Turn last;

        void add(ChatSession.Turn turn) {
            turns++;
            promptTokens += turn.promptTokens();
            reusedTokens += turn.reusedTokens();
            generatedTokens += turn.generatedTokens();
            promptNanos += turn.promptNanos();
            generateNanos += turn.generateNanos();
            last = turn;
        }

        String describe(ChatSession session) {
            StringBuilder s = new StringBuilder();
            s.append(String.format(Locale.ROOT, "context: %d of %d tokens in the cache%n", session.cachedTokens(), session.contextSize()));
            if (last != null) {
                s.append(lastAnswer()).append(System.lineSeparator());
            }
            long run = promptTokens - reusedTokens;
            s.append(String.format(Locale.ROOT, "session: %d answers; prompts %d tokens (%d reused), %.1f tok/s; generation %d tokens, %.1f tok/s",
                    turns, promptTokens, reusedTokens, rate(run, promptNanos), generatedTokens, rate(generatedTokens, generateNanos)));
            return s.toString();
        }

        String lastAnswer() {
            return String.format(Locale.ROOT, "last answer: prompt %d tokens (%d reused, %d run), %d generated",
                    last.promptTokens(), last.reusedTokens(), last.promptTokens() - last.reusedTokens(),
                    last.generatedTokens());
        }

        private static double rate(long tokens, long nanos) {
            return nanos == 0 ? 0 : tokens * 1e9 / nanos;
        }
    }
}
