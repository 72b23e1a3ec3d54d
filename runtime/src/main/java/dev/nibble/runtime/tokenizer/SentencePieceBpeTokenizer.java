package dev.nibble.runtime.tokenizer;

import dev.nibble.formats.vocab.Vocabulary;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;

/**
 * SentencePiece-style BPE as Llama 1/2 and Mistral use it: spaces become ▁, a dummy-prefix space goes first, the
 * adjacent pair whose merged piece scores highest merges first (leftmost on ties), and characters outside the
 * vocabulary fall back to byte tokens {@code <0xNN>}.
 */
public final class SentencePieceBpeTokenizer extends Tokenizer {

    private static final char METASPACE = '\u2581';
    private static final int CACHE_LIMIT = 100_000;
    private static final Pattern BYTE_PIECE = Pattern.compile("<0x[0-9A-Fa-f]{2}>");

    private final float[] scores;
    /** Ids of the byte tokens by byte value, or null when the vocabulary has none (unknown characters become unk). */
    private final int[] byteIds;
    /**
     * True when no mergeable piece has a ▁ right after another character, so that no merge can cross the start of a
     * word: the text is then merged word by word, with a cache, instead of in one queue over the whole text. This
     * holds for Llama 2, Mistral and the tiny model; a vocabulary without it is merged whole, with the same result.
     */
    private final boolean wordsAreIndependent;
    private final Map<String, int[]> cache = new ConcurrentHashMap<>();

    SentencePieceBpeTokenizer(Vocabulary vocab) {
        super(vocab);
        this.wordsAreIndependent = noPieceSpansAWordStart(vocab);
        if (vocab.scores() == null) {
            throw new IllegalArgumentException("a SentencePiece-style vocabulary needs token scores");
        }
        this.scores = vocab.scores();
        boolean anyByte = false;
        for (int t : vocab.tokenTypes()) {
            anyByte |= t == Vocabulary.BYTE;
        }
        if (anyByte) {
            List<String> spellings = new ArrayList<>(256);
            for (int b = 0; b < 256; b++) {
                spellings.add(String.format("<0x%02X>", b));
            }
            this.byteIds = byteTokenIds(spellings, "byte-fallback");
            for (int id = 0; id < vocab.size(); id++) {
                if (vocab.tokenTypes()[id] == Vocabulary.BYTE && !BYTE_PIECE.matcher(vocab.tokens().get(id)).matches()) {
                    throw new IllegalArgumentException("token " + id + " '" + vocab.tokens().get(id) + "' is typed as a byte but is not <0xNN>");
                }
            }
        } else if (vocab.unkId() < 0) {
            throw new IllegalArgumentException("vocabulary has neither byte tokens nor an unknown token, so some text cannot be encoded");
        } else {
            this.byteIds = null;
        }
    }

    private static boolean noPieceSpansAWordStart(Vocabulary vocab) {
        for (int id = 0; id < vocab.size(); id++) {
            String t = vocab.tokens().get(id);
            if (vocab.tokenTypes()[id] != Vocabulary.NORMAL) {
                continue;
            }
            for (int i = 1; i < t.length(); i++) {
                if (t.charAt(i) == METASPACE && t.charAt(i - 1) != METASPACE) {
                    return false;
                }
            }
        }
        return true;
    }

    @Override
    void encodeText(String text, IdList out) {
        // As llama.cpp does, every run of text gets the dummy prefix, including one that follows a special token.
        String escaped = (vocab.addSpacePrefix() ? " " + text : text).replace(' ', METASPACE);
        if (!wordsAreIndependent) {
            out.addAll(bpe(escaped));
            return;
        }
        int wordStart = 0;
        for (int i = 1; i <= escaped.length(); i++) {
            if (i == escaped.length() || (escaped.charAt(i) == METASPACE && escaped.charAt(i - 1) != METASPACE)) {
                String word = escaped.substring(wordStart, i);
                int[] ids = cache.get(word);
                if (ids == null) {
                    ids = bpe(word);
                    if (cache.size() >= CACHE_LIMIT) {
                        cache.clear();
                    }
                    cache.put(word, ids);
                }
                out.addAll(ids);
                wordStart = i;
            }
        }
    }

    /** Merges one escaped text completely. */
    private int[] bpe(String escaped) {
        IdList out = new IdList();
        // Symbols start as single code points and grow by merging with their right neighbour; a merged-away
        // symbol has length 0. Kept as parallel arrays so that a megabyte of text makes no per-symbol objects.
        int n = escaped.codePointCount(0, escaped.length());
        int[] start = new int[n];
        int[] len = new int[n];
        int[] prev = new int[n];
        int[] next = new int[n];
        for (int i = 0, pos = 0; i < n; i++) {
            start[i] = pos;
            len[i] = Character.charCount(escaped.codePointAt(pos));
            pos += len[i];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        PriorityQueue<Bigram> queue = new PriorityQueue<>();
        for (int i = 0; i + 1 < n; i++) {
            offer(queue, escaped, start, len, i, i + 1);
        }
        while (!queue.isEmpty()) {
            Bigram b = queue.poll();
            // Stale when either side has changed since the pair was queued.
            if (len[b.left] == 0 || len[b.right] == 0 || len[b.left] + len[b.right] != b.length) {
                continue;
            }
            len[b.left] += len[b.right];
            len[b.right] = 0;
            next[b.left] = next[b.right];
            if (next[b.right] >= 0) {
                prev[next[b.right]] = b.left;
            }
            if (prev[b.left] >= 0) {
                offer(queue, escaped, start, len, prev[b.left], b.left);
            }
            if (next[b.left] >= 0) {
                offer(queue, escaped, start, len, b.left, next[b.left]);
            }
        }
        for (int i = 0; i >= 0 && i < n; i = next[i]) {
            String piece = escaped.substring(start[i], start[i] + len[i]);
            Integer id = ids.get(piece);
            if (id != null && vocab.tokenTypes()[id] == Vocabulary.NORMAL) {
                out.add(id);
            } else if (byteIds != null) {
                for (byte b : utf8(piece)) {
                    out.add(byteIds[b & 0xff]);
                }
            } else {
                out.add(vocab.unkId());
            }
        }
        return out.toArray();
    }

    private void offer(PriorityQueue<Bigram> queue, String text, int[] start, int[] len, int left, int right) {
        Integer id = ids.get(text.substring(start[left], start[right] + len[right]));
        // Only ordinary pieces take part in merging: control, byte and user-defined pieces never form from text.
        if (id != null && vocab.tokenTypes()[id] == Vocabulary.NORMAL) {
            queue.add(new Bigram(left, right, scores[id], len[left] + len[right]));
        }
    }

    /** A candidate merge; higher score first, then the leftmost. */
    private record Bigram(int left, int right, float score, int length) implements Comparable<Bigram> {
        @Override
        public int compareTo(Bigram o) {
            int c = Float.compare(o.score, score);
            return c != 0 ? c : Integer.compare(left, o.left);
        }
    }

    @Override
    byte[] bytesOf(int id, boolean skipSpecial) {
        checkId(id);
        if (isSpecial(id)) {
            return skipSpecial ? new byte[0] : utf8(vocab.tokens().get(id));
        }
        String piece = vocab.tokens().get(id);
        if (vocab.tokenTypes()[id] == Vocabulary.BYTE) {
            return new byte[] {(byte) Integer.parseInt(piece.substring(3, 5), 16)};
        }
        return utf8(piece.replace(METASPACE, ' '));
    }

    @Override
    boolean stripsLeadingSpace() {
        return vocab.addSpacePrefix();
    }
}
