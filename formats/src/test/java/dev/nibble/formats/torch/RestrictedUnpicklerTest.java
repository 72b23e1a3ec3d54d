package dev.nibble.formats.torch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.checkpoint.Fixtures;
import dev.nibble.formats.torch.TorchZipWriter.Pickle;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.zip.ZipFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class RestrictedUnpicklerTest {

    private static final Path FILE = Path.of("test.bin");

    @TempDir
    Path dir;

    private static Map<String, PickledTensor> read(byte[] pickle) throws FormatException {
        return RestrictedUnpickler.readStateDict(FILE, "archive/data.pkl", pickle);
    }

    /** The classic exploit: {@code os.system(command)} via GLOBAL + REDUCE, inside an otherwise valid state dict. */
    private static byte[] exploit(String module, String name, String command, boolean stackGlobal) {
        Pickle p = new Pickle().op(0x80).op(2).op('}').unicode("w");
        if (stackGlobal) {
            p.unicode(module).unicode(name).op(0x93);
        } else {
            p.global(module, name);
        }
        return p.unicode(command).op(0x85).op('R').op('s').op('.').bytes();
    }

    @Test
    void systemCallInThePickleIsRefusedBeforeAnythingRuns() throws IOException {
        Path marker = dir.resolve("pwned");
        byte[] pickle = exploit("posix", "system", "touch " + marker, false);
        int globalAt = 2 + 1 + 1 + 4 + 1; // PROTO 2, EMPTY_DICT, BINUNICODE 'w'
        FormatException e = assertThrows(FormatException.class, () -> read(pickle));
        assertEquals("test.bin: archive/data.pkl at byte " + globalAt + ": global 'posix.system' is not allowed in a checkpoint"
                + " (only state-dict types are); refusing to load", e.getMessage());
        assertEquals(globalAt, e.offset());
        assertFalse(Files.exists(marker), "nothing may be executed");

        Path checkpoint = dir.resolve("pytorch_model.bin");
        TorchZipWriter.write(checkpoint, "archive/", pickle, List.of(), false, "little");
        FormatException fromFile = assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(checkpoint));
        assertTrue(fromFile.getMessage().contains("global 'posix.system' is not allowed"), fromFile.getMessage());
        assertFalse(Files.exists(marker), "nothing may be executed");
    }

    @ParameterizedTest
    @CsvSource({"builtins,eval", "os,system", "__builtin__,getattr", "subprocess,Popen", "torch,load", "torch._utils,_rebuild_parameter",
            "collections,defaultdict", "numpy.core.multiarray,_reconstruct", "torch.serialization,_get_layout"})
    void everyOtherGlobalIsRefused(String module, String name) {
        for (boolean stackGlobal : new boolean[] {false, true}) {
            FormatException e = assertThrows(FormatException.class, () -> read(exploit(module, name, "id", stackGlobal)));
            assertTrue(e.getMessage().contains("global '" + module + "." + name + "' is not allowed"), e.getMessage());
        }
    }

    @Test
    void unknownOpcodeIsRejectedWithItsOffset() {
        byte[] pickle = new Pickle().op(0x80).op(2).op('}').op(0xFF).op('.').bytes();
        FormatException e = assertThrows(FormatException.class, () -> read(pickle));
        assertEquals(3, e.offset());
        assertTrue(e.getMessage().contains("opcode 0xff"), e.getMessage());
        // INST and OBJ call classes too; they are not state-dict opcodes.
        for (int op : new int[] {'i', 'o', 0x81, 0x92, 'B'}) {
            byte[] other = new Pickle().op(0x80).op(2).op(op).op('.').bytes();
            assertEquals(2, assertThrows(FormatException.class, () -> read(other)).offset());
        }
    }

    @Test
    void unsupportedProtocolIsRejected() {
        FormatException e = assertThrows(FormatException.class, () -> read(new Pickle().op(0x80).op(6).op('}').op('.').bytes()));
        assertTrue(e.getMessage().contains("protocol 6"), e.getMessage());
    }

    @Test
    void realDataPklIsReadWithTiedStorageKeysAndShapes() throws IOException {
        byte[] pickle;
        try (ZipFile zip = new ZipFile(Fixtures.tinyBin().toFile())) {
            pickle = zip.getInputStream(zip.getEntry("pytorch_model/data.pkl")).readAllBytes();
        }
        Map<String, PickledTensor> dict = read(pickle);
        assertEquals(57, dict.size());
        PickledTensor lmHead = dict.get("lm_head.weight");
        assertEquals(new StorageRef("HalfStorage", "0", 524288), lmHead.storage());
        assertArrayEquals(new long[] {2048, 256}, lmHead.size());
        assertArrayEquals(new long[] {256, 1}, lmHead.stride());
        assertEquals(0, lmHead.storageOffset());
    }

    @Test
    void protocolFiveFramesMemoizeAndOrderedDictsAreUnderstood() throws FormatException {
        // A 5-tuple persistent id, LONG1 offset, TUPLE1 sizes, memoized OrderedDict, SETITEMS and BUILD.
        Pickle q = new Pickle().op(0x80).op(5);
        q.op(0x95).raw(new byte[] {100, 0, 0, 0, 0, 0, 0, 0});
        q.global("collections", "OrderedDict").op(')').op('R').op(0x94);
        q.op('(');
        q.op(0x8c).op(1).op('w');
        q.global("torch._utils", "_rebuild_tensor_v2");
        q.op('(').op('(').unicode("storage").global("torch", "FloatStorage").unicode("k").unicode("cpu").op('K').op(2).op('t').op('Q');
        q.op(0x8a).op(1).op(1); // LONG1 1: storage offset
        q.op('K').op(1).op(0x85); // size (1,)
        q.op('K').op(1).op(0x85); // stride (1,)
        q.op(0x88); // requires_grad True
        q.op('h').op(0); // BINGET 0: an (empty) OrderedDict for backward_hooks
        q.op('t').op('R');
        q.op('u'); // SETITEMS
        q.op('}').op('b'); // BUILD with an empty __dict__ state
        q.op('.');
        Map<String, PickledTensor> dict = read(q.bytes());
        PickledTensor w = dict.get("w");
        assertEquals(new StorageRef("FloatStorage", "k", 2), w.storage());
        assertEquals(1, w.storageOffset());
        assertArrayEquals(new long[] {1}, w.size());
    }

    @Test
    void negativeLong1IsSignExtended() throws FormatException {
        // A storage offset of -1 (LONG1 0xff) must be read as negative and rejected, not as 255.
        Pickle q = new Pickle().op(0x80).op(2).op('}').unicode("w").global("torch._utils", "_rebuild_tensor");
        q.op('(').op('(').unicode("storage").global("torch", "FloatStorage").unicode("0").unicode("cpu").op('K').op(4).op('t').op('Q');
        q.op(0x8a).op(1).op(0xff).op('K').op(1).op(0x85).op('K').op(1).op(0x85).op('t').op('R').op('s').op('.');
        FormatException e = assertThrows(FormatException.class, () -> read(q.bytes()));
        assertTrue(e.getMessage().contains("storage offset -1"), e.getMessage());
    }

    @Test
    void nonTensorValuesAndNestedDictsAreRejected() {
        byte[] nested = new Pickle().op(0x80).op(2).op('}').unicode("state_dict").op('}').op('s').op('.').bytes();
        FormatException e = assertThrows(FormatException.class, () -> read(nested));
        assertTrue(e.getMessage().contains("'state_dict' is a dict, not a tensor"), e.getMessage());
        byte[] list = new Pickle().op(0x80).op(2).op(']').op('.').bytes();
        assertTrue(assertThrows(FormatException.class, () -> read(list)).getMessage().contains("holds a list"));
    }

    @Test
    void selfReferencingContainersCannotHangTheReader() {
        // l = []; l.append(l); d = {l: 1}: hashing l would recurse forever, so list keys are refused.
        byte[] pickle = new Pickle().op(0x80).op(2).op('}').op(']').op('q').op(0).op('h').op(0).op('a').op('K').op(1).op('s').op('.').bytes();
        FormatException e = assertThrows(FormatException.class, () -> read(pickle));
        assertTrue(e.getMessage().contains("dict key is a list"), e.getMessage());
    }

    @Test
    void truncatedAndEmptyPicklesAreRejected() throws IOException {
        byte[] real;
        try (ZipFile zip = new ZipFile(Fixtures.tinyBin().toFile())) {
            real = zip.getInputStream(zip.getEntry("pytorch_model/data.pkl")).readAllBytes();
        }
        for (int cut = 0; cut < real.length; cut += 97) {
            byte[] part = Arrays.copyOf(real, cut);
            assertThrows(FormatException.class, () -> read(part), "cut at " + cut);
        }
    }

    @Test
    void randomByteFlipsInTheRealPickleOnlyEverGiveFormatExceptions() throws IOException {
        byte[] real;
        try (ZipFile zip = new ZipFile(Fixtures.tinyBin().toFile())) {
            real = zip.getInputStream(zip.getEntry("pytorch_model/data.pkl")).readAllBytes();
        }
        Random random = new Random(77);
        int rejected = 0;
        for (int round = 0; round < 3000; round++) {
            byte[] copy = real.clone();
            for (int flips = 1 + random.nextInt(4); flips > 0; flips--) {
                copy[random.nextInt(copy.length)] = (byte) random.nextInt(256);
            }
            try {
                read(copy);
            } catch (FormatException expected) {
                rejected++;
            } catch (RuntimeException | StackOverflowError | OutOfMemoryError e) {
                fail("round " + round + ": " + e, e);
            }
        }
        assertTrue(rejected > 1000, "rejected " + rejected);
    }

    @Test
    void aPickleWithAHugeDeclaredStringIsRejectedWithoutAllocatingIt() {
        byte[] pickle = new Pickle().op(0x80).op(2).op(0x8d).raw(new byte[] {0, 0, 0, 0, 0, 0, 0, 0x40}).bytes();
        FormatException e = assertThrows(FormatException.class, () -> read(pickle));
        assertTrue(e.getMessage().contains("runs past the end"), e.getMessage());
    }

    @Test
    void valuesThePickleBuildsAreBoundedInTotal() {
        // One list grown by an APPEND per value: the stack stays shallow, so only a total over the pickle stops it.
        Pickle q = new Pickle().op(0x80).op(2).op(']');
        for (long i = 0; i <= RestrictedUnpickler.MAX_VALUES; i++) {
            q.op('N').op('a');
        }
        FormatException e = assertThrows(FormatException.class, () -> read(q.op('.').bytes()));
        assertTrue(e.getMessage().contains("more than " + RestrictedUnpickler.MAX_VALUES + " values in all"), e.getMessage());
    }
}
