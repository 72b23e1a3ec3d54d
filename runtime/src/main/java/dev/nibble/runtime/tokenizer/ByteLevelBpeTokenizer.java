package dev.nibble.runtime.tokenizer;

import dev.nibble.formats.vocab.Vocabulary;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Byte-level BPE as Llama 3 uses it: the text is split by Llama 3's pre-tokenizer pattern, each piece's UTF-8 bytes
 * are spelled in GPT-2's byte alphabet, and adjacent pairs merge by rank (lowest first, leftmost on ties); a piece
 * that is already a whole token is taken as is.
 */
public final class ByteLevelBpeTokenizer extends Tokenizer {

    /** Llama 3's split pattern; Java needs UNICODE_CHARACTER_CLASS for \s to mean Unicode whitespace, as in the original. */
    private static final Pattern LLAMA3_SPLIT = Pattern.compile(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                    + "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            Pattern.UNICODE_CHARACTER_CLASS);
    private static final int CACHE_LIMIT = 100_000;

    /** (left id, right id) packed into a long -> merge rank. */
    private final Map<Long, Integer> mergeRank;
    /** Merged token id by rank. */
    private final int[] mergeResult;
    private final int[] byteIds;
    private final Map<String, int[]> cache = new ConcurrentHashMap<>();

    ByteLevelBpeTokenizer(Vocabulary vocab) {
        super(vocab);
        if (!vocab.preTokenizer().equals("llama-bpe") && !vocab.preTokenizer().equals("llama3")) {
            throw new IllegalArgumentException("byte-level pre-tokenizer '" + vocab.preTokenizer()
                    + "' is not supported; nibble implements Llama 3's (llama-bpe)");
        }
        if (vocab.merges().isEmpty()) {
            throw new IllegalArgumentException("byte-level vocabulary has no merges");
        }
        List<String> alphabet = new ArrayList<>(256);
        for (int b = 0; b < 256; b++) {
            alphabet.add(String.valueOf(ByteLevelAlphabet.charOf(b)));
        }
        this.byteIds = byteTokenIds(alphabet, "byte-level");
        for (int id = 0; id < vocab.size(); id++) {
            int type = vocab.tokenTypes()[id];
            if (type == Vocabulary.NORMAL || type == Vocabulary.BYTE) {
                String token = vocab.tokens().get(id);
                for (int i = 0; i < token.length(); i++) {
                    if (ByteLevelAlphabet.byteOf(token.charAt(i)) < 0) {
                        throw new IllegalArgumentException("token " + id + " has the character U+"
                                + String.format("%04X", (int) token.charAt(i)) + ", which is outside the byte-level"
                                + " alphabet; the tokenizer data is not byte-level BPE");
                    }
                }
            }
        }
        this.mergeRank = new HashMap<>(vocab.merges().size() * 2);
        this.mergeResult = new int[vocab.merges().size()];
        for (int rank = 0; rank < mergeResult.length; rank++) {
            String m = vocab.merges().get(rank);
            int space = m.indexOf(' ');
            Integer left = space > 0 ? ids.get(m.substring(0, space)) : null;
            Integer right = space > 0 ? ids.get(m.substring(space + 1)) : null;
            Integer merged = space > 0 ? ids.get(m.substring(0, space) + m.substring(space + 1)) : null;
            if (left == null || right == null || merged == null) {
                throw new IllegalArgumentException("merge " + rank + " '" + m + "' names a token that is not in the vocabulary");
            }
            mergeRank.putIfAbsent(pair(left, right), rank);
            mergeResult[rank] = merged;
        }
    }

    private static long pair(int left, int right) {
        return ((long) left << 32) | (right & 0xffffffffL);
    }

    @Override
    void encodeText(String text, IdList out) {
        Matcher m = LLAMA3_SPLIT.matcher(text);
        int last = 0;
        while (m.find()) {
            if (m.start() > last) {
                encodeWord(text.substring(last, m.start()), out);
            }
            encodeWord(m.group(), out);
            last = m.end();
        }
        if (last < text.length()) {
            encodeWord(text.substring(last), out);
        }
    }

    private void encodeWord(String word, IdList out) {
        int[] cached = cache.get(word);
        if (cached == null) {
            cached = bpe(word);
            if (cache.size() >= CACHE_LIMIT) {
                cache.clear();
            }
            cache.put(word, cached);
        }
        out.addAll(cached);
    }

    private int[] bpe(String word) {
        byte[] bytes = word.getBytes(StandardCharsets.UTF_8);
        StringBuilder spelled = new StringBuilder(bytes.length);
        for (byte b : bytes) {
            spelled.append(ByteLevelAlphabet.charOf(b & 0xff));
        }
        Integer whole = ids.get(spelled.toString());
        if (whole != null) {
            // Llama 3 sets ignore_merges: a piece that is a token is that token, whatever the merges would say.
            return new int[] {whole};
        }
        int n = bytes.length;
        int[] sym = new int[n];
        int[] prev = new int[n];
        int[] next = new int[n];
        for (int i = 0; i < n; i++) {
            sym[i] = byteIds[bytes[i] & 0xff];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        PriorityQueue<Merge> queue = new PriorityQueue<>();
        for (int i = 0; i + 1 < n; i++) {
            offer(queue, sym, i, i + 1);
        }
        boolean[] gone = new boolean[n];
        while (!queue.isEmpty()) {
            Merge q = queue.poll();
            // Stale when either side was merged into something else after the pair was queued.
            if (gone[q.left] || gone[q.right] || next[q.left] != q.right
                    || sym[q.left] != q.leftId || sym[q.right] != q.rightId) {
                continue;
            }
            sym[q.left] = mergeResult[q.rank];
            gone[q.right] = true;
            next[q.left] = next[q.right];
            if (next[q.right] >= 0) {
                prev[next[q.right]] = q.left;
            }
            if (prev[q.left] >= 0) {
                offer(queue, sym, prev[q.left], q.left);
            }
            if (next[q.left] >= 0) {
                offer(queue, sym, q.left, next[q.left]);
            }
        }
        IdList out = new IdList();
        for (int i = 0; i >= 0; i = next[i]) {
            out.add(sym[i]);
        }
        return out.toArray();
    }

    private void offer(PriorityQueue<Merge> queue, int[] sym, int left, int right) {
        Integer rank = mergeRank.get(pair(sym[left], sym[right]));
        if (rank != null) {
            queue.add(new Merge(left, right, sym[left], sym[right], rank));
        }
    }

    /** A candidate merge; lowest rank first, then the leftmost. */
    private record Merge(int left, int right, int leftId, int rightId, int rank) implements Comparable<Merge> {
        @Override
        public int compareTo(Merge o) {
            int c = Integer.compare(rank, o.rank);
            return c != 0 ? c : Integer.compare(left, o.left);
        }
    }

    @Override
    byte[] bytesOf(int id, boolean skipSpecial) {
        checkId(id);
        String token = vocab.tokens().get(id);
        if (isSpecial(id)) {
            return skipSpecial ? new byte[0] : utf8(token);
        }
        if (vocab.tokenTypes()[id] == Vocabulary.USER_DEFINED) {
            // Added tokens are stored as plain text rather than in the byte alphabet.
            return utf8(token);
        }
        byte[] out = new byte[token.length()];
        for (int i = 0; i < token.length(); i++) {
            int b = ByteLevelAlphabet.byteOf(token.charAt(i));
            if (b < 0 && vocab.tokenTypes()[id] == Vocabulary.UNUSED) {
                // Placeholders are not checked when the tokenizer is made (normal and byte tokens are).
                return utf8(token);
            }
            if (b < 0) {
                throw new IllegalStateException("token " + id + " '" + token + "' has a character outside the byte alphabet");
            }
            out[i] = (byte) b;
        }
        return out;
    }

    @Override
    boolean stripsLeadingSpace() {
        return false;
    }
}
