package dev.nibble.formats.vocab;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Reads a Hugging Face model folder's tokenizer ({@code tokenizer.model} or {@code tokenizer.json}, with
 * {@code tokenizer_config.json}) into a {@link Vocabulary}; both files of one model give the same vocabulary.
 */
public final class HuggingFaceVocabulary {

    /** The pre-tokenizer split pattern of Llama 3's tokenizer.json, which GGUF calls "llama-bpe". */
    static final String LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
            + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    private static final Pattern BYTE_PIECE = Pattern.compile("<0x[0-9A-F]{2}>");
    private static final ObjectMapper JSON = new ObjectMapper();
    /**
     * Bounds on what a tokenizer's files may make this reader build: the largest real tokenizer.json is about 35 MB
     * (its JSON tree takes about ten times that on the heap) and the largest vocabularies about 260,000 tokens; the
     * token bound matches the longest array a GGUF file may hold. Ids may leave holes (filled with placeholders, as
     * llama.cpp's converter does), but not more holes than tokens, so that one large id cannot make millions.
     */
    static final long MAX_JSON_BYTES = 64L << 20;
    static final int MAX_TOKENS = 1 << 22;
    static final int MAX_HOLES = 1 << 10;

    private HuggingFaceVocabulary() {
    }

    /** Reads {@code tokenizer.model} when the folder has one (as llama.cpp's converter prefers), else {@code tokenizer.json}. */
    public static Vocabulary load(Path modelDir) throws IOException {
        if (Files.isRegularFile(modelDir.resolve("tokenizer.model"))) {
            return loadSentencePiece(modelDir);
        }
        if (Files.isRegularFile(modelDir.resolve("tokenizer.json"))) {
            return loadTokenizerJson(modelDir);
        }
        throw new FormatException(modelDir, "tokenizer", -1,
                "no tokenizer.model or tokenizer.json in this folder; copy the model's tokenizer files next to its weights");
    }

    /** Reads the folder's SentencePiece {@code tokenizer.model} (BPE models only) and its tokenizer_config.json. */
    public static Vocabulary loadSentencePiece(Path modelDir) throws IOException {
        Path file = modelDir.resolve("tokenizer.model");
        SentencePieceModelFile sp = SentencePieceModelFile.read(file);
        if (sp.modelType() != SentencePieceModelFile.BPE) {
            throw new FormatException(file, "trainer_spec.model_type", -1, "model type " + sp.modelType()
                    + " is not BPE (2); nibble reads SentencePiece BPE models such as Llama and Mistral");
        }
        if (sp.treatWhitespaceAsSuffix() || !sp.escapeWhitespaces() || sp.removeExtraWhitespaces()) {
            throw new FormatException(file, "normalizer_spec", -1, "unsupported whitespace handling (treat_whitespace_as_suffix="
                    + sp.treatWhitespaceAsSuffix() + ", escape_whitespaces=" + sp.escapeWhitespaces()
                    + ", remove_extra_whitespaces=" + sp.removeExtraWhitespaces() + "); Llama-style models use false, true, false");
        }
        if (!sp.normalizerName().isEmpty() && !sp.normalizerName().equals("identity")) {
            throw new FormatException(file, "normalizer_spec.name", -1, "normalization '" + sp.normalizerName()
                    + "' is not supported; Llama-style models use 'identity'");
        }
        Config config = Config.read(modelDir);
        List<String> tokens = new ArrayList<>(sp.pieces());
        List<Float> scores = new ArrayList<>();
        List<Integer> types = new ArrayList<>();
        for (int i = 0; i < tokens.size(); i++) {
            scores.add(sp.scores()[i]);
            // SentencePiece's piece types use GGUF's numbering (GGUF took them from there).
            types.add(sp.types()[i]);
        }
        config.appendAddedTokens(file, tokens, scores, types);
        Map<String, Integer> ids = indexOf(tokens);
        int n = tokens.size();
        int bos = config.tokenId("bos_token", ids, inRange(sp.bosId(), n));
        int eos = config.tokenId("eos_token", ids, inRange(sp.eosId(), n));
        int unk = config.tokenId("unk_token", ids, inRange(sp.unkId(), n));
        int pad = config.tokenId("pad_token", ids, inRange(sp.padId(), n));
        try {
            return new Vocabulary(Vocabulary.Model.LLAMA, "default", tokens, toFloats(scores), toInts(types), List.of(),
                    bos, eos, unk, pad, config.flag("add_bos_token", true), config.flag("add_eos_token", false),
                    sp.addDummyPrefix());
        } catch (IllegalArgumentException e) {
            throw new FormatException(file, "pieces", -1, e.getMessage(), e);
        }
    }

    /** Reads the folder's {@code tokenizer.json} (SentencePiece-style or byte-level BPE) and its tokenizer_config.json. */
    public static Vocabulary loadTokenizerJson(Path modelDir) throws IOException {
        Path file = modelDir.resolve("tokenizer.json");
        JsonNode root = readJson(file);
        JsonNode model = root.path("model");
        String type = model.path("type").asText("");
        if (!type.equals("BPE")) {
            throw new FormatException(file, "model.type", -1, "unknown tokenizer model type '" + type
                    + "'; nibble reads BPE tokenizers (Llama, Mistral, Llama 3)");
        }
        boolean byteLevel = hasType(root.path("pre_tokenizer"), "ByteLevel") || hasType(root.path("decoder"), "ByteLevel");
        boolean metaspace = hasType(root.path("pre_tokenizer"), "Metaspace") || replacesSpaceWithMetaspace(root.path("normalizer"));
        if (!byteLevel && !metaspace) {
            throw new FormatException(file, "pre_tokenizer", -1,
                    "neither byte-level nor SentencePiece-style (▁ for spaces); nibble cannot tokenize like this model");
        }
        JsonNode vocab = model.path("vocab");
        if (!vocab.isObject() || vocab.isEmpty()) {
            throw new FormatException(file, "model.vocab", -1, "missing or empty");
        }
        Map<Integer, String> byId = new HashMap<>();
        for (Map.Entry<String, JsonNode> e : vocab.properties()) {
            putToken(file, byId, e.getValue().asInt(-1), e.getKey(), "model.vocab");
        }
        Map<Integer, Boolean> added = new HashMap<>();
        for (JsonNode t : root.path("added_tokens")) {
            int id = t.path("id").asInt(-1);
            String content = t.path("content").asText(null);
            if (content == null) {
                throw new FormatException(file, "added_tokens", -1, "entry for id " + id + " has no content");
            }
            putToken(file, byId, id, content, "added_tokens");
            added.put(id, t.path("special").asBoolean(false));
        }
        List<String> merges = readMerges(file, model.path("merges"));
        if (merges.isEmpty()) {
            throw new FormatException(file, "model.merges", -1, "missing or empty; a BPE tokenizer needs its merges");
        }
        int n = byId.keySet().stream().mapToInt(Integer::intValue).max().orElseThrow() + 1;
        if (n - byId.size() > Math.max(MAX_HOLES, byId.size())) {
            throw new FormatException(file, "model.vocab", -1, "token ids run to " + (n - 1) + " but only " + byId.size()
                    + " tokens are given; " + (n - byId.size()) + " missing ids is more than this reader fills in (at most "
                    + Math.max(MAX_HOLES, byId.size()) + ")");
        }
        List<String> tokens = new ArrayList<>(n);
        int[] types = new int[n];
        Config config = Config.read(modelDir);
        String unkToken = model.path("unk_token").isTextual() ? model.path("unk_token").asText() : config.tokenText("unk_token");
        boolean byteFallback = model.path("byte_fallback").asBoolean(false);
        for (int id = 0; id < n; id++) {
            String t = byId.get(id);
            if (t == null) {
                // llama.cpp's converter fills holes in the id space the same way.
                tokens.add("[PAD" + id + "]");
                types[id] = Vocabulary.UNUSED;
                continue;
            }
            tokens.add(t);
            Boolean special = added.get(id);
            if (t.equals(unkToken)) {
                types[id] = Vocabulary.UNKNOWN;
            } else if (special != null) {
                types[id] = special ? Vocabulary.CONTROL : Vocabulary.USER_DEFINED;
            } else if (byteFallback && BYTE_PIECE.matcher(t).matches()) {
                types[id] = Vocabulary.BYTE;
            } else {
                types[id] = Vocabulary.NORMAL;
            }
        }
        Map<String, Integer> ids = indexOf(tokens);
        checkMerges(file, merges, ids);
        JsonNode single = root.path("post_processor").path("type").asText("").equals("TemplateProcessing")
                && root.path("post_processor").path("single").isArray() ? root.path("post_processor").path("single") : null;
        int templateBos = -1;
        int templateEos = -1;
        if (single != null && single.size() > 0) {
            templateBos = specialTokenId(single.get(0), ids);
            templateEos = single.size() > 1 ? specialTokenId(single.get(single.size() - 1), ids) : -1;
        }
        int bos = config.tokenId("bos_token", ids, templateBos);
        int eos = config.tokenId("eos_token", ids, -1);
        int unk = config.tokenId("unk_token", ids, unkToken == null ? -1 : ids.getOrDefault(unkToken, -1));
        int pad = config.tokenId("pad_token", ids, -1);
        // Without an explicit flag, follow the post-processor template; without one of those, llama.cpp's defaults
        // (BOS on for both Llama-style and Llama 3 vocabularies).
        boolean addBos = config.flag("add_bos_token", single == null || templateBos >= 0);
        boolean addEos = config.flag("add_eos_token", single != null && templateEos >= 0 && templateEos != templateBos);
        if (byteLevel) {
            String pattern = splitPattern(root.path("pre_tokenizer"));
            if (!LLAMA3_PATTERN.equals(pattern)) {
                throw new FormatException(file, "pre_tokenizer", -1, "split pattern " + (pattern == null ? "(none)" : "'" + pattern + "'")
                        + " is not Llama 3's; nibble's byte-level tokenizer implements the llama-bpe pre-tokenizer only");
            }
            return new Vocabulary(Vocabulary.Model.GPT2, "llama-bpe", tokens, null, types, merges,
                    bos, eos, unk, pad, addBos, addEos, false);
        }
        return new Vocabulary(Vocabulary.Model.LLAMA, "default", tokens, scoresFromMerges(merges, tokens, ids), types,
                List.of(), bos, eos, unk, pad, addBos, addEos, addsSpacePrefix(root));
    }

    /**
     * SentencePiece merges the pair whose merged piece scores highest; tokenizer.json lists the same merges in that
     * order instead. A piece's score is minus the rank of the first merge that makes it; pieces no merge makes score
     * below every merge, so they never win against one.
     */
    private static float[] scoresFromMerges(List<String> merges, List<String> tokens, Map<String, Integer> ids) {
        float[] scores = new float[tokens.size()];
        Arrays.fill(scores, Float.NaN);
        for (int rank = 0; rank < merges.size(); rank++) {
            String m = merges.get(rank);
            int space = m.indexOf(' ');
            int id = ids.get(m.substring(0, space) + m.substring(space + 1));
            if (Float.isNaN(scores[id])) {
                scores[id] = -rank;
            }
        }
        float floor = -merges.size();
        for (int i = 0; i < scores.length; i++) {
            if (Float.isNaN(scores[i])) {
                scores[i] = floor - i;
            }
        }
        return scores;
    }

    private static boolean addsSpacePrefix(JsonNode root) {
        for (JsonNode n : nodesOfType(root.path("normalizer"), "Prepend")) {
            if (n.path("prepend").asText("").equals("\u2581")) {
                return true;
            }
        }
        for (JsonNode n : nodesOfType(root.path("pre_tokenizer"), "Metaspace")) {
            String scheme = n.path("prepend_scheme").asText("");
            if (scheme.equals("always") || scheme.equals("first") || n.path("add_prefix_space").asBoolean(false)) {
                return true;
            }
        }
        return false;
    }

    private static boolean replacesSpaceWithMetaspace(JsonNode normalizer) {
        for (JsonNode n : nodesOfType(normalizer, "Replace")) {
            if (n.path("pattern").path("String").asText("").equals(" ") && n.path("content").asText("").equals("\u2581")) {
                return true;
            }
        }
        return false;
    }

    private static String splitPattern(JsonNode preTokenizer) {
        for (JsonNode n : nodesOfType(preTokenizer, "Split")) {
            JsonNode regex = n.path("pattern").path("Regex");
            if (regex.isTextual()) {
                return regex.asText();
            }
        }
        return null;
    }

    private static boolean hasType(JsonNode node, String type) {
        return !nodesOfType(node, type).isEmpty();
    }

    /** The node and the members of its Sequence (normalizers, pretokenizers, decoders) that have this "type". */
    private static List<JsonNode> nodesOfType(JsonNode node, String type) {
        List<JsonNode> found = new ArrayList<>();
        if (node == null || !node.isObject()) {
            return found;
        }
        if (node.path("type").asText("").equals(type)) {
            found.add(node);
        }
        for (String member : List.of("normalizers", "pretokenizers", "decoders")) {
            for (JsonNode child : node.path(member)) {
                found.addAll(nodesOfType(child, type));
            }
        }
        return found;
    }

    private static int specialTokenId(JsonNode templatePart, Map<String, Integer> ids) {
        JsonNode special = templatePart.path("SpecialToken");
        return special.isObject() ? ids.getOrDefault(special.path("id").asText(""), -1) : -1;
    }

    private static List<String> readMerges(Path file, JsonNode merges) throws FormatException {
        List<String> out = new ArrayList<>(merges.size());
        for (JsonNode m : merges) {
            if (m.isTextual() && m.asText().indexOf(' ') > 0) {
                out.add(m.asText());
            } else if (m.isArray() && m.size() == 2 && m.get(0).isTextual() && m.get(1).isTextual()) {
                out.add(m.get(0).asText() + " " + m.get(1).asText());
            } else {
                throw new FormatException(file, "model.merges[" + out.size() + "]", -1, "neither \"a b\" nor [\"a\", \"b\"]: " + m);
            }
        }
        return out;
    }

    private static void checkMerges(Path file, List<String> merges, Map<String, Integer> ids) throws FormatException {
        for (int i = 0; i < merges.size(); i++) {
            String m = merges.get(i);
            int space = m.indexOf(' ');
            String left = m.substring(0, space);
            String right = m.substring(space + 1);
            if (!ids.containsKey(left) || !ids.containsKey(right) || !ids.containsKey(left + right)) {
                throw new FormatException(file, "model.merges[" + i + "]", -1, "'" + m + "' names a piece that is not in the vocabulary");
            }
        }
    }

    private static void putToken(Path file, Map<Integer, String> byId, int id, String text, String item) throws FormatException {
        if (id < 0 || id >= MAX_TOKENS) {
            throw new FormatException(file, item, -1, "token '" + text + "' has invalid id " + id + " (ids are 0 to "
                    + (MAX_TOKENS - 1) + ")");
        }
        String old = byId.putIfAbsent(id, text);
        if (old != null && !old.equals(text)) {
            throw new FormatException(file, item, -1, "id " + id + " is both '" + old + "' and '" + text + "'");
        }
    }

    private static Map<String, Integer> indexOf(List<String> tokens) {
        Map<String, Integer> ids = new HashMap<>(tokens.size() * 2);
        for (int i = 0; i < tokens.size(); i++) {
            ids.putIfAbsent(tokens.get(i), i);
        }
        return ids;
    }

    private static int inRange(int id, int n) {
        return id >= 0 && id < n ? id : -1;
    }

    private static float[] toFloats(List<Float> values) {
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = values.get(i);
        }
        return out;
    }

    private static int[] toInts(List<Integer> values) {
        return values.stream().mapToInt(Integer::intValue).toArray();
    }

    static JsonNode readJson(Path file) throws IOException {
        long size = Files.size(file);
        if (size > MAX_JSON_BYTES) {
            throw new FormatException(file, "JSON", -1, "is " + size + " bytes, more than a tokenizer file needs (at most "
                    + MAX_JSON_BYTES + " are read)");
        }
        byte[] bytes = Files.readAllBytes(file);
        String text;
        try {
            // JSON files are UTF-8 (RFC 8259); the parser's own guessing of UTF-16 and UTF-32 is not wanted.
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw new FormatException(file, "JSON", -1, "is not valid UTF-8 text");
        }
        int bom = text.startsWith("\uFEFF") ? 1 : 0;
        try {
            return JSON.readTree(text.substring(bom));
        } catch (JacksonException e) {
            long chars = e.getLocation() == null ? -1 : e.getLocation().getCharOffset();
            long offset = chars < 0 ? -1 : 3L * bom
                    + text.substring(bom, (int) Math.min(text.length(), bom + chars)).getBytes(StandardCharsets.UTF_8).length;
            throw new FormatException(file, "JSON", offset, e.getOriginalMessage());
        }
    }

    /** tokenizer_config.json (falling back to special_tokens_map.json for token names); empty when absent. */
    private record Config(Path file, JsonNode root, JsonNode specialMap) {

        static Config read(Path modelDir) throws IOException {
            Path file = modelDir.resolve("tokenizer_config.json");
            Path map = modelDir.resolve("special_tokens_map.json");
            JsonNode root = Files.isRegularFile(file) ? readJson(file) : JSON.createObjectNode();
            JsonNode specialMap = Files.isRegularFile(map) ? readJson(map) : JSON.createObjectNode();
            return new Config(file, root, specialMap);
        }

        boolean flag(String key, boolean fallback) {
            JsonNode v = root.path(key);
            return v.isBoolean() ? v.asBoolean() : fallback;
        }

        /** The text of the token the config names under key, or null. */
        String tokenText(String key) {
            JsonNode v = root.has(key) ? root.path(key) : specialMap.path(key);
            return v.isTextual() ? v.asText() : v.isObject() ? v.path("content").asText(null) : null;
        }

        /** The id of the token the config names under key ("bos_token" ...), or fallback when it names none. */
        int tokenId(String key, Map<String, Integer> ids, int fallback) throws FormatException {
            String content = tokenText(key);
            if (content == null) {
                return fallback;
            }
            Integer id = ids.get(content);
            if (id == null) {
                throw new FormatException(file, key, -1, "names '" + content + "', which is not in the vocabulary");
            }
            return id;
        }

        /** Appends tokens the config adds past the end of a SentencePiece model (HF added_tokens_decoder). */
        void appendAddedTokens(Path modelFile, List<String> tokens, List<Float> scores, List<Integer> types) throws FormatException {
            JsonNode decoder = root.path("added_tokens_decoder");
            Map<Integer, JsonNode> extra = new HashMap<>();
            for (Map.Entry<String, JsonNode> e : decoder.properties()) {
                int id;
                try {
                    id = Integer.parseInt(e.getKey());
                } catch (NumberFormatException x) {
                    throw new FormatException(file, "added_tokens_decoder", -1, "key '" + e.getKey() + "' is not a token id");
                }
                String content = e.getValue().path("content").asText("");
                if (id < 0) {
                    throw new FormatException(file, "added_tokens_decoder", -1, "key '" + e.getKey() + "' is not a token id");
                }
                if (id < tokens.size()) {
                    if (!tokens.get(id).equals(content)) {
                        throw new FormatException(file, "added_tokens_decoder", -1, "id " + id + " is '" + content
                                + "' but " + modelFile.getFileName() + " has '" + tokens.get(id) + "'");
                    }
                } else {
                    extra.put(id, e.getValue());
                }
            }
            for (int id = tokens.size(); !extra.isEmpty(); id++) {
                JsonNode t = extra.remove(id);
                if (t == null) {
                    throw new FormatException(file, "added_tokens_decoder", -1, "token ids skip " + id);
                }
                tokens.add(t.path("content").asText());
                scores.add(0f);
                types.add(t.path("special").asBoolean(false) ? Vocabulary.CONTROL : Vocabulary.USER_DEFINED);
            }
        }
    }
}
