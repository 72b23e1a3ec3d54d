package dev.nibble.formats.torch;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.nibble.formats.FormatException;
import dev.nibble.testing.FuzzChecks;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import dev.nibble.formats.torch.TorchZipWriter.Pickle;
import dev.nibble.formats.torch.TorchZipWriter.Storage;
import dev.nibble.formats.torch.TorchZipWriter.View;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Coverage-guided fuzzing of PyTorch checkpoints: the zip archive with its records ({@link #zip}) and the restricted
 * unpickler on its own ({@link #pickle}, where the fuzzer reaches deeper in the same time). Seeds: the bad inputs of
 * {@link TorchZipCheckpointTest} and {@link RestrictedUnpicklerTest} and a few valid checkpoints, written by
 * {@link #main}.
 */
class TorchZipFuzzTest {

    private static final Path FILE = Path.of("fuzz.bin");

    @FuzzTest(maxDuration = "60s")
    void zip(byte[] data) throws Exception {
        Path file = FuzzChecks.write("fuzz.bin", data);
        // The zip reader's buffers are a fixed cost; inflated records live off the heap (bounded in total there).
        FuzzChecks.bounded(data.length, 128, 8 << 20, () -> readZip(file));
    }

    private static void readZip(Path file) throws IOException {
        try (TorchZipCheckpoint c = TorchZipCheckpoint.open(file)) {
            for (CheckpointTensor t : c.tensors()) {
                if (t.data().byteSize() > 0) {
                    t.data().get(ValueLayout.JAVA_BYTE, t.data().byteSize() - 1);
                }
            }
        } catch (FormatException e) {
            FuzzChecks.cleanRefusal(e);
        }
    }

    @FuzzTest(maxDuration = "60s")
    void pickle(byte[] data) throws Exception {
        FuzzChecks.bounded(data.length, 128, 4 << 20, () -> {
            try {
                RestrictedUnpickler.readStateDict(FILE, "archive/data.pkl", data);
            } catch (FormatException e) {
                FuzzChecks.cleanRefusal(e);
            }
        });
    }

    /** Writes the seed inputs into {@code args[0]} (the formats module's directory). */
    public static void main(String[] args) throws IOException {
        Path module = Path.of(args[0]);
        Path scratch = Files.createTempDirectory("nibble-seeds");
        Storage a = new Storage("0", "FloatStorage", 4, bytes(24));
        Storage h = new Storage("1", "HalfStorage", 2, bytes(8));
        List<View> valid = List.of(view("a", a, 0, 2, 3), view("h", h, 0, 4), view("a2", a, 2, 4));
        Map<String, byte[]> pickles = new LinkedHashMap<>();
        pickles.put("valid-state-dict", TorchZipWriter.pickle(valid));
        pickles.put("exploit-global", exploit("posix", "system", "touch pwned", false));
        pickles.put("exploit-stack-global", exploit("builtins", "eval", "1", true));
        pickles.put("protocol-5-frames-memo", protocolFive());
        pickles.put("unknown-opcode", new Pickle().op(0x80).op(2).op('}').op(0xFF).op('.').bytes());
        pickles.put("protocol-6", new Pickle().op(0x80).op(6).op('}').op('.').bytes());
        pickles.put("negative-long1-offset", new Pickle().op(0x80).op(2).op('}').unicode("w").global("torch._utils", "_rebuild_tensor")
                .op('(').op('(').unicode("storage").global("torch", "FloatStorage").unicode("k").unicode("cpu").op('K').op(1).op('t')
                .op('Q').op(0x8a).op(1).op(0xff).op('(').op('K').op(1).op('t').op('(').op('K').op(1).op('t').op('t').op('R').op('s')
                .op('.').bytes());
        Pickle grow = new Pickle().op(0x80).op(2).op(']');
        for (int i = 0; i < 200; i++) {
            grow.op(']').op('a');
        }
        pickles.put("list-grown-by-appends", grow.op('.').bytes());
        Pickle marks = new Pickle().op(0x80).op(2);
        for (int i = 0; i < 300; i++) {
            marks.op('(');
        }
        pickles.put("many-marks", marks.op('t').op('.').bytes());
        Path pickleDir = module.resolve("src/test/resources/dev/nibble/formats/torch/TorchZipFuzzTestInputs/pickle");
        Files.createDirectories(pickleDir);
        for (Map.Entry<String, byte[]> e : pickles.entrySet()) {
            Files.write(pickleDir.resolve(e.getKey()), e.getValue());
        }

        Map<String, byte[]> zips = new LinkedHashMap<>();
        zips.put("valid-stored", zip(scratch, valid, false));
        zips.put("valid-deflated", zip(scratch, valid, true));
        zips.put("non-contiguous", zip(scratch, List.of(new View("t", a, 0, new long[] {2, 3}, new long[] {1, 2})), false));
        zips.put("int-storage", zip(scratch, List.of(view("i", new Storage("0", "LongStorage", 8, bytes(16)), 0, 2)), false));
        zips.put("view-past-storage", zip(scratch, List.of(view("v", a, 4, 4)), false));
        Path p = scratch.resolve("z");
        TorchZipWriter.write(p, "archive/", pickles.get("exploit-global"), List.of(), false, "little");
        zips.put("exploit", Files.readAllBytes(p));
        TorchZipWriter.write(p, "archive/", TorchZipWriter.pickle(valid), List.of(a), false, "little");
        zips.put("missing-record", Files.readAllBytes(p));
        TorchZipWriter.write(p, "archive/", TorchZipWriter.pickle(List.of(view("a", a, 0, 6))), List.of(a), false, "big");
        zips.put("big-endian", Files.readAllBytes(p));
        TorchZipWriter.write(p, "", TorchZipWriter.pickle(List.of(view("a", a, 0, 6))), List.of(a), true, null);
        zips.put("no-prefix-no-byteorder", Files.readAllBytes(p));
        byte[] zeros = new byte[1 << 16];
        Storage z1 = new Storage("0", "FloatStorage", 4, zeros);
        Storage z2 = new Storage("1", "FloatStorage", 4, zeros);
        zips.put("deflated-zeros", zip(scratch, List.of(view("z1", z1, 0, zeros.length / 4), view("z2", z2, 0, zeros.length / 4)), true));
        zips.put("not-a-zip", "this is not a zip archive".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
        byte[] whole = zips.get("valid-stored");
        for (int cut : new int[] {22, whole.length / 2, whole.length - 30, whole.length - 1}) {
            zips.put("truncated-at-" + cut, Arrays.copyOf(whole, cut));
        }
        Path zipDir = module.resolve("src/test/resources/dev/nibble/formats/torch/TorchZipFuzzTestInputs/zip");
        Files.createDirectories(zipDir);
        for (Map.Entry<String, byte[]> e : zips.entrySet()) {
            Files.write(zipDir.resolve(e.getKey()), e.getValue());
        }
    }

    private static byte[] bytes(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 13 + 5);
        }
        return b;
    }

    private static View view(String name, Storage s, long offset, long... size) {
        return new View(name, s, offset, size, TorchZipWriter.contiguousStride(size));
    }

    private static byte[] zip(Path scratch, List<View> views, boolean compress) throws IOException {
        Path p = scratch.resolve("seed.bin");
        TorchZipWriter.write(p, views, compress);
        return Files.readAllBytes(p);
    }

    private static byte[] exploit(String module, String name, String command, boolean stackGlobal) {
        Pickle p = new Pickle().op(0x80).op(2).op('}').unicode("w");
        if (stackGlobal) {
            p.unicode(module).unicode(name).op(0x93);
        } else {
            p.global(module, name);
        }
        return p.unicode(command).op(0x85).op('R').op('s').op('.').bytes();
    }

    private static byte[] protocolFive() {
        Pickle q = new Pickle().op(0x80).op(5);
        q.op(0x95).raw(new byte[] {100, 0, 0, 0, 0, 0, 0, 0});
        q.global("collections", "OrderedDict").op(')').op('R').op(0x94);
        q.op('(');
        q.op(0x8c).op(1).op('w');
        q.global("torch._utils", "_rebuild_tensor_v2");
        q.op('(').op('(').unicode("storage").global("torch", "FloatStorage").unicode("k").unicode("cpu").op('K').op(2).op('t').op('Q');
        q.op(0x8a).op(1).op(1);
        q.op('K').op(1).op(0x85);
        q.op('K').op(1).op(0x85);
        q.op(0x88);
        q.op('h').op(0);
        q.op('t').op('R');
        q.op('u');
        q.op('}').op('b');
        return q.op('.').bytes();
    }
}
