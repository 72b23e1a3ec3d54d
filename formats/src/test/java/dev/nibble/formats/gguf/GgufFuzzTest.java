package dev.nibble.formats.gguf;

import static dev.nibble.formats.gguf.RawGguf.ARRAY;
import static dev.nibble.formats.gguf.RawGguf.BOOL;
import static dev.nibble.formats.gguf.RawGguf.FLOAT32;
import static dev.nibble.formats.gguf.RawGguf.INT32;
import static dev.nibble.formats.gguf.RawGguf.STRING;
import static dev.nibble.formats.gguf.RawGguf.TYPE_F32;
import static dev.nibble.formats.gguf.RawGguf.TYPE_Q4_0;
import static dev.nibble.formats.gguf.RawGguf.UINT32;
import static dev.nibble.formats.gguf.RawGguf.UINT64;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.nibble.formats.FormatException;
import dev.nibble.testing.FuzzChecks;
import dev.nibble.formats.vocab.VocabularyGguf;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Coverage-guided fuzzing of the GGUF reader: header, metadata, tensor table, tensor slices, and the tokenizer
 * metadata read from them. In a plain test run this replays the inputs in {@code GgufFuzzTestInputs/gguf} (the bad
 * inputs of {@link GgufBadInputTest} and a few valid files, written by {@link #main}, plus every finding); with
 * {@code JAZZER_FUZZ=1} it fuzzes from them (see bench/fuzz.sh).
 */
class GgufFuzzTest {

    @FuzzTest(maxDuration = "60s")
    void gguf(byte[] data) throws Exception {
        Path file = FuzzChecks.write("fuzz.gguf", data);
        FuzzChecks.bounded(data.length, 64, 4 << 20, () -> read(file));
    }

    private static void read(Path file) throws IOException {
        try (GgufFile f = GgufFile.open(file)) {
            GgufSummary.of(f).bitsPerWeight();
            for (String key : f.metadata().keys()) {
                f.metadata().get(key).orElseThrow().type();
            }
            for (GgufTensor t : f.tensors()) {
                if (t.data().byteSize() > 0) {
                    t.data().get(ValueLayout.JAVA_BYTE, t.data().byteSize() - 1);
                }
            }
            if (f.metadata().contains(VocabularyGguf.MODEL)) {
                try {
                    VocabularyGguf.read(f);
                } catch (FormatException e) {
                    FuzzChecks.cleanRefusal(e);
                }
            }
        } catch (FormatException e) {
            FuzzChecks.cleanRefusal(e);
        }
    }

    /** Writes the seed inputs into {@code args[0]} (the formats module's directory). */
    public static void main(String[] args) throws IOException {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        seeds.put("valid-two-tensors", valid().toBytes());
        seeds.put("valid-vocabulary", RawGguf.header(3, 0, 6)
                .kvString("tokenizer.ggml.model", "llama")
                .str("tokenizer.ggml.tokens").u32(ARRAY).u32(STRING).u64(4).str("<unk>").str("<s>").str("</s>").str("\u2581a")
                .str("tokenizer.ggml.scores").u32(ARRAY).u32(FLOAT32).u64(4).u32(0).u32(0).u32(0).u32(0)
                .str("tokenizer.ggml.token_type").u32(ARRAY).u32(INT32).u64(4).u32(2).u32(3).u32(3).u32(1)
                .kvU32("tokenizer.ggml.bos_token_id", 1)
                .str("tokenizer.ggml.add_bos_token").u32(BOOL).u8(1).toBytes());
        byte[] wrongMagic = valid().toBytes();
        wrongMagic[3] = 'L';
        seeds.put("wrong-magic", wrongMagic);
        byte[] v1 = valid().toBytes();
        v1[4] = 1;
        seeds.put("version-1", v1);
        long huge = 1L << 62;
        seeds.put("huge-tensor-count", RawGguf.header(3, huge, 0).zeros(64).toBytes());
        seeds.put("huge-key-count", RawGguf.header(3, 0, huge).zeros(64).toBytes());
        seeds.put("counts-exceed-file", RawGguf.header(3, 5, 12).zeros(200).toBytes());
        seeds.put("huge-key-length", RawGguf.header(3, 0, 1).u64(huge).zeros(64).toBytes());
        seeds.put("huge-string", RawGguf.header(3, 0, 1).str("name").u32(STRING).u64(huge).zeros(64).toBytes());
        seeds.put("huge-array", RawGguf.header(3, 0, 1).str("arr").u32(ARRAY).u32(STRING).u64(huge).zeros(64).toBytes());
        seeds.put("strings-beyond-prefixes", RawGguf.header(3, 0, 1).str("s").u32(ARRAY).u32(STRING).u64(6).zeros(40).toBytes());
        seeds.put("unknown-value-type", RawGguf.header(3, 0, 1).str("k").u32(13).zeros(16).toBytes());
        seeds.put("bool-2", RawGguf.header(3, 0, 1).str("b").u32(BOOL).u8(2).toBytes());
        RawGguf deep = RawGguf.header(3, 0, 1).str("deep").u32(ARRAY);
        for (int i = 0; i < 70; i++) {
            deep.u32(ARRAY).u64(1);
        }
        seeds.put("arrays-nested-deep", deep.u32(UINT32).u64(1).u32(7).toBytes());
        seeds.put("many-empty-arrays", manyEmptyArrays(64));
        seeds.put("n-dims-5", RawGguf.header(3, 1, 0).str("t").u32(5).zeros(80).toBytes());
        seeds.put("dims-overflow", RawGguf.header(3, 1, 0).tensor("t", TYPE_F32, 0, 1L << 32, 1L << 32).pad(32).zeros(64).toBytes());
        seeds.put("dim-zero", RawGguf.header(3, 1, 0).tensor("t", TYPE_F32, 0, 0, 3).pad(32).zeros(64).toBytes());
        seeds.put("unknown-tensor-type", RawGguf.header(3, 1, 0).str("x").u32(1).u64(32).u32(77).u64(0).pad(32).zeros(128).toBytes());
        seeds.put("row-not-block-multiple", RawGguf.header(3, 1, 0).tensor("q", TYPE_Q4_0, 0, 33).pad(32).zeros(64).toBytes());
        seeds.put("alignment-48", RawGguf.header(3, 0, 1).kvU32("general.alignment", 48).toBytes());
        seeds.put("alignment-u64", RawGguf.header(3, 0, 1).str("general.alignment").u32(UINT64).u64(32).toBytes());
        seeds.put("unaligned-offset", RawGguf.header(3, 1, 0).str("t").u32(1).u64(4).u32(TYPE_F32).u64(4).pad(32).zeros(64).toBytes());
        seeds.put("overlapping-tensors", twoTensors(0, 32));
        seeds.put("tensors-out-of-order", twoTensors(64, 0));
        seeds.put("tensor-past-end", twoTensors(0, 96));
        seeds.put("duplicate-key", RawGguf.header(3, 0, 2).kvU32("k", 1).kvU32("k", 2).toBytes());
        seeds.put("duplicate-tensor", RawGguf.header(3, 2, 0).tensor("w", TYPE_F32, 0, 16).tensor("w", TYPE_F32, 64, 16)
                .pad(32).zeros(128).toBytes());
        seeds.put("key-not-utf8", RawGguf.header(3, 0, 1).u64(2).bytes(0xC3, 0x28).u32(RawGguf.UINT8).u8(1).toBytes());
        byte[] whole = valid().toBytes();
        for (int cut : new int[] {3, 11, 30, 60, whole.length / 2, whole.length - 20}) {
            seeds.put("truncated-at-" + cut, Arrays.copyOf(whole, cut));
        }
        Path dir = Path.of(args[0], "src/test/resources/dev/nibble/formats/gguf/GgufFuzzTestInputs/gguf");
        Files.createDirectories(dir);
        for (Map.Entry<String, byte[]> e : seeds.entrySet()) {
            Files.write(dir.resolve(e.getKey()), e.getValue());
        }
    }

    /** The valid file of {@link GgufBadInputTest}: two tensors, three keys. */
    private static RawGguf valid() {
        RawGguf raw = RawGguf.header(3, 2, 3)
                .kvU32("general.alignment", 32)
                .kvString("general.name", "tiny")
                .str("list").u32(ARRAY).u32(INT32).u64(3).u32(7).u32(-1).u32(9)
                .tensor("a", TYPE_F32, 0, 8, 2)
                .tensor("b", TYPE_Q4_0, 64, 32)
                .pad(32);
        for (int i = 1; i <= 64 + 18; i++) {
            raw.u8(i);
        }
        return raw.pad(32);
    }

    private static byte[] twoTensors(long offsetA, long offsetB) {
        return RawGguf.header(3, 2, 0).tensor("a", TYPE_F32, offsetA, 16).tensor("b", TYPE_F32, offsetB, 16)
                .pad(32).zeros(128).toBytes();
    }

    /** The shape of issue 11's 201 MB file of 2^24 empty arrays, in small. */
    private static byte[] manyEmptyArrays(int n) {
        RawGguf raw = RawGguf.header(3, 0, n);
        for (int i = 0; i < n; i++) {
            raw.str("k" + i).u32(ARRAY).u32(RawGguf.UINT8).u64(0);
        }
        return raw.toBytes();
    }
}
