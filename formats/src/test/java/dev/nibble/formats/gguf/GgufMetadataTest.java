package dev.nibble.formats.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

/** Typed getters convert what they promise and name the key when they cannot. */
class GgufMetadataTest {

    private final GgufMetadata m = GgufMetadata.builder()
            .putU32("llama.block_count", 22).putU8("small", 200).putF32("eps", 1e-5f).putF64("theta", 10000.5)
            .putString("arch", "llama").putBool("flag", true)
            .putArray("u32s", GgufValueType.UINT32, List.of(0xFFFF_FFFFL))
            .putArray("i16s", GgufValueType.INT16, List.of(-3, 4))
            .putStringArray("tokens", List.of("a", "b"))
            .build();

    @Test
    void integerGettersAcceptEveryIntegerType() {
        assertEquals(22, m.getLong("llama.block_count"));
        assertEquals(200, m.getLong("small"));
        assertEquals(OptionalLong.empty(), m.findLong("absent"));
        assertArrayEquals(new long[] {0xFFFF_FFFFL}, m.getLongArray("u32s"));
        assertArrayEquals(new int[] {-3, 4}, m.getIntArray("i16s"));
    }

    @Test
    void doubleGetterAcceptsFloatsAndIntegers() {
        assertEquals(1e-5f, (float) m.getDouble("eps"));
        assertEquals(10000.5, m.getDouble("theta"));
        assertEquals(22.0, m.getDouble("llama.block_count"));
        assertEquals(OptionalDouble.empty(), m.findDouble("absent"));
    }

    @Test
    void missingOrMistypedKeysAreNamed() {
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class, () -> m.getString("general.name"));
        assertTrue(missing.getMessage().contains("'general.name'") && missing.getMessage().contains("missing"));
        IllegalArgumentException mistyped = assertThrows(IllegalArgumentException.class, () -> m.getLong("arch"));
        assertTrue(mistyped.getMessage().contains("'arch'") && mistyped.getMessage().contains("STRING"), mistyped.getMessage());
        assertThrows(IllegalArgumentException.class, () -> m.getIntArray("u32s"));
        assertThrows(IllegalArgumentException.class, () -> m.getFloatArray("tokens"));
        assertThrows(IllegalArgumentException.class, () -> m.getStringArray("i16s"));
        assertThrows(IllegalArgumentException.class, () -> m.findBoolean("arch"));
        assertThrows(IllegalArgumentException.class, () -> m.getDouble("flag"));
    }

    @Test
    void findGettersReturnPresentValues() {
        assertEquals(Optional.of("llama"), m.findString("arch"));
        assertEquals(Optional.of(true), m.findBoolean("flag"));
        assertEquals(List.of("a", "b"), m.getStringArray("tokens"));
    }

    @Test
    void valuesOutOfTheirTypesRangeAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> GgufValue.u8(256));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.i8(128));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.u16(-1));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.u32(1L << 32));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.array(GgufValueType.FLOAT32, List.of("x")));
        assertThrows(IllegalArgumentException.class, () -> new GgufValue(GgufValueType.STRING, 3L));
    }

    @Test
    void puttingAKeyAgainReplacesItInPlace() {
        GgufMetadata r = GgufMetadata.builder().putU32("a", 1).putU32("b", 2).putString("a", "x").build();
        assertEquals(List.of("a", "b"), List.copyOf(r.keys()));
        assertEquals("x", r.getString("a"));
    }
}
