package dev.nibble.runtime.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.vocab.Vocabulary;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The priority-queue merges against a plain quadratic BPE (rescan every pair, merge the best, repeat) on random
 * seeded texts drawn from letters, digits, whitespace, punctuation, accents, CJK and emoji.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class BpeAgainstPlainReferenceTest {

    private static final String[] ALPHABET = {
        "a", "e", "t", "h", "n", "s", "r", "o", "i", "T", "Q", " ", " ", " ", "  ", "\n", "\t", "0", "7", "42", ".", ",",
        "'", "\"", "-", "é", "ß", "ü", "日", "本", "語", "中", "😀", "🦙", "👍🏽", "И", "я", "ا", "the", " the", "ing", "\u00a0"
    };

    private Tokenizer tiny;
    private Tokenizer llama2;
    private Tokenizer llama3;
    private Map<String, Integer> llama3Ids;
    private final Map<Vocabulary, Map<String, Integer>> indexes = new java.util.IdentityHashMap<>();
    private final Map<String, Integer> llama3Ranks = new HashMap<>();
    private final char[] gpt2Chars = new char[256];

    @BeforeAll
    void load() {
        tiny = TestTokenizers.get("tiny");
        llama2 = TestTokenizers.get("llama2");
        llama3 = TestTokenizers.get("llama3");
    }

    @Test
    void sentencePieceMergesMatchPlainReferenceOnRandomTexts() {
        Random random = new Random(20261127);
        for (int i = 0; i < 300; i++) {
            String text = randomText(random, random.nextInt(60));
            for (Tokenizer t : List.of(tiny, llama2)) {
                assertArrayEquals(plainSentencePiece(t.vocabulary(), text), t.encode(text, false, false), () -> "text: " + text);
            }
        }
    }

    @Test
    void vocabularyWithPiecesAcrossWordStartsIsMergedWhole() {
        // "s▁" and "e▁t" let merges cross the start of a word, so the tokenizer cannot merge word by word.
        Vocabulary v = tiny.vocabulary();
        List<String> tokens = new ArrayList<>(v.tokens());
        tokens.addAll(List.of("s\u2581", "e\u2581t"));
        float[] scores = java.util.Arrays.copyOf(v.scores(), tokens.size());
        scores[tokens.size() - 2] = 10f;
        scores[tokens.size() - 1] = -3000f;
        int[] types = java.util.Arrays.copyOf(v.tokenTypes(), tokens.size());
        types[tokens.size() - 2] = Vocabulary.NORMAL;
        types[tokens.size() - 1] = Vocabulary.NORMAL;
        Vocabulary crossing = new Vocabulary(v.model(), v.preTokenizer(), tokens, scores, types, v.merges(),
                v.bosId(), v.eosId(), v.unkId(), v.padId(), v.addBos(), v.addEos(), v.addSpacePrefix());
        Tokenizer t = Tokenizer.from(crossing);
        int[] ids = t.encode("its time", false, false);
        int crossingPiece = tokens.size() - 2;
        assertTrue(java.util.Arrays.stream(ids).anyMatch(id -> id == crossingPiece), "\"s▁\" merges across the word start");
        Random random = new Random(11);
        for (int i = 0; i < 200; i++) {
            String text = randomText(random, random.nextInt(60));
            assertArrayEquals(plainSentencePiece(crossing, text), t.encode(text, false, false), () -> "text: " + text);
        }
    }

    @Test
    void byteLevelMergesMatchPlainReferenceOnRandomTexts() {
        Random random = new Random(77);
        for (int i = 0; i < 300; i++) {
            String text = randomText(random, random.nextInt(60));
            assertArrayEquals(plainByteLevel(llama3.vocabulary(), text), llama3.encode(text, false, false), () -> "text: " + text);
        }
    }

    @Test
    void randomTextsRoundTripThroughDecode() {
        Random random = new Random(5);
        for (int i = 0; i < 200; i++) {
            String text = randomText(random, 1 + random.nextInt(80));
            assertEquals(text, llama3.decode(llama3.encode(text, false, false)));
            // SentencePiece's decoder drops the dummy-prefix space, so the round trip is exact for these too.
            assertEquals(text, llama2.decode(llama2.encode(text, false, false)));
            assertEquals(text, tiny.decode(tiny.encode(text, false, false)));
        }
    }

    private static String randomText(Random random, int parts) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < parts; i++) {
            sb.append(ALPHABET[random.nextInt(ALPHABET.length)]);
        }
        return sb.toString();
    }

    /** Quadratic SentencePiece BPE: merge the adjacent pair whose joined piece scores highest, leftmost on ties. */
    private int[] plainSentencePiece(Vocabulary v, String text) {
        if (text.isEmpty()) {
            return new int[0];
        }
        Map<String, Integer> ids = indexes.computeIfAbsent(v, BpeAgainstPlainReferenceTest::index);
        String escaped = ("" + (v.addSpacePrefix() ? " " : "") + text).replace(' ', '\u2581');
        List<String> sym = new ArrayList<>();
        escaped.codePoints().forEach(cp -> sym.add(Character.toString(cp)));
        while (true) {
            int best = -1;
            float bestScore = Float.NEGATIVE_INFINITY;
            for (int i = 0; i + 1 < sym.size(); i++) {
                Integer id = ids.get(sym.get(i) + sym.get(i + 1));
                if (id != null && v.tokenTypes()[id] == Vocabulary.NORMAL && (best < 0 || v.scores()[id] > bestScore)) {
                    best = i;
                    bestScore = v.scores()[id];
                }
            }
            if (best < 0) {
                break;
            }
            sym.set(best, sym.get(best) + sym.remove(best + 1));
        }
        List<Integer> out = new ArrayList<>();
        for (String s : sym) {
            Integer id = ids.get(s);
            if (id != null && v.tokenTypes()[id] == Vocabulary.NORMAL) {
                out.add(id);
            } else {
                for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
                    out.add(ids.get(String.format("<0x%02X>", b & 0xff)));
                }
            }
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Quadratic byte-level BPE per pre-tokenized piece: merge the lowest-ranked pair, leftmost on ties. */
    private int[] plainByteLevel(Vocabulary v, String text) {
        if (llama3Ids == null) {
            llama3Ids = index(v);
            for (int i = 0; i < v.merges().size(); i++) {
                llama3Ranks.putIfAbsent(v.merges().get(i), i);
            }
            for (int b = 0; b < 256; b++) {
                gpt2Chars[b] = gpt2Char(b);
            }
        }
        Map<String, Integer> ids = llama3Ids;
        Map<String, Integer> rank = llama3Ranks;
        Pattern split = Pattern.compile("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", Pattern.UNICODE_CHARACTER_CLASS);
        List<Integer> out = new ArrayList<>();
        Matcher m = split.matcher(text);
        while (m.find()) {
            List<String> sym = new ArrayList<>();
            for (byte b : m.group().getBytes(StandardCharsets.UTF_8)) {
                sym.add(String.valueOf(gpt2Chars[b & 0xff]));
            }
            Integer whole = ids.get(String.join("", sym));
            if (whole != null) {
                out.add(whole);
                continue;
            }
            while (true) {
                int best = -1;
                int bestRank = Integer.MAX_VALUE;
                for (int i = 0; i + 1 < sym.size(); i++) {
                    Integer r = rank.get(sym.get(i) + " " + sym.get(i + 1));
                    if (r != null && r < bestRank) {
                        best = i;
                        bestRank = r;
                    }
                }
                if (best < 0) {
                    break;
                }
                sym.set(best, sym.get(best) + sym.remove(best + 1));
            }
            sym.forEach(s -> out.add(ids.get(s)));
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    /** GPT-2's byte alphabet written out from its definition, independently of ByteLevelAlphabet. */
    private static char gpt2Char(int b) {
        List<Integer> printable = new ArrayList<>();
        for (int c = '!'; c <= '~'; c++) {
            printable.add(c);
        }
        for (int c = 0xA1; c <= 0xAC; c++) {
            printable.add(c);
        }
        for (int c = 0xAE; c <= 0xFF; c++) {
            printable.add(c);
        }
        if (printable.contains(b)) {
            return (char) b;
        }
        int n = 0;
        for (int x = 0; x < b; x++) {
            if (!printable.contains(x)) {
                n++;
            }
        }
        return (char) (256 + n);
    }

    private static Map<String, Integer> index(Vocabulary v) {
        Map<String, Integer> ids = new HashMap<>();
        for (int i = 0; i < v.size(); i++) {
            ids.putIfAbsent(v.tokens().get(i), i);
        }
        return ids;
    }
}
