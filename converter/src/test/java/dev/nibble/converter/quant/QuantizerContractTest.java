package dev.nibble.converter.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class QuantizerContractTest {

    @ParameterizedTest
    @EnumSource(GgmlType.class)
    void forTypeGivesAQuantizerOfThatType(GgmlType type) {
        assertEquals(type, Quantizer.forType(type).type());
    }

    @ParameterizedTest
    @EnumSource(GgmlType.class)
    void writesExactlyTheRowBytesAtTheOffsetFromAnySourceOffset(GgmlType type) {
        Random rnd = new Random(31 + type.ordinal());
        int n = type.blockSize() * 3;
        float[] row = RoundTrip.gaussian(rnd, n, 0.7);
        float[] padded = new float[n + 9];
        Arrays.fill(padded, 1e6f);
        System.arraycopy(row, 0, padded, 5, n);
        int bytes = (int) type.byteSize(n);
        byte[] dst = new byte[bytes + 20];
        Arrays.fill(dst, (byte) 0x5A);
        Quantizer.forType(type).quantizeRow(padded, 5, n, MemorySegment.ofArray(dst), 7);

        byte[] expected = RoundTrip.quantize(type, row);
        assertArrayEquals(expected, Arrays.copyOfRange(dst, 7, 7 + bytes));
        for (int i = 0; i < dst.length; i++) {
            if (i < 7 || i >= 7 + bytes) {
                assertEquals((byte) 0x5A, dst[i], "byte " + i + " outside the row was written");
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ4_NL", "NF4"})
    void rowLengthThatIsNotWholeBlocksIsRejected(GgmlType type) {
        float[] row = new float[type.blockSize() * 2];
        MemorySegment dst = MemorySegment.ofArray(new byte[4096]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Quantizer.forType(type).quantizeRow(row, 0, type.blockSize() + 16, dst, 0));
        assertEquals(true, e.getMessage().contains(type.toString()), e.getMessage());
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ4_NL", "NF4"})
    void nonFiniteWeightIsRejectedWithItsIndex(GgmlType type) {
        float[] row = RoundTrip.gaussian(new Random(5), type.blockSize() * 2, 1.0);
        row[type.blockSize() + 3] = Float.NaN;
        MemorySegment dst = MemorySegment.ofArray(new byte[4096]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Quantizer.forType(type).quantizeRow(row, 0, row.length, dst, 0));
        assertEquals(true, e.getMessage().contains("weight " + (type.blockSize() + 3)), e.getMessage());
        row[type.blockSize() + 3] = Float.NEGATIVE_INFINITY;
        assertThrows(IllegalArgumentException.class, () -> Quantizer.forType(type).quantizeRow(row, 0, row.length, dst, 0));
    }

    @ParameterizedTest
    @EnumSource(GgmlType.class)
    void tooSmallDestinationOrSourceIsRejected(GgmlType type) {
        int n = type.blockSize() * 2;
        Quantizer q = Quantizer.forType(type);
        MemorySegment small = MemorySegment.ofArray(new byte[(int) type.byteSize(n) - 1]);
        assertThrows(IndexOutOfBoundsException.class, () -> q.quantizeRow(new float[n], 0, n, small, 0));
        MemorySegment big = MemorySegment.ofArray(new byte[(int) type.byteSize(n)]);
        assertThrows(IndexOutOfBoundsException.class, () -> q.quantizeRow(new float[n], 1, n, big, 0));
    }

    @ParameterizedTest
    @EnumSource(GgmlType.class)
    void rowsQuantizedConcurrentlyMatchRowsQuantizedOneByOne(GgmlType type) throws Exception {
        Random rnd = new Random(97 + type.ordinal());
        int rows = 24;
        int n = Math.max(type.blockSize(), 32) * 4;
        float[] matrix = RoundTrip.gaussian(rnd, rows * n, 0.05);
        int rowBytes = (int) type.byteSize(n);
        Quantizer shared = Quantizer.forType(type);
        MemorySegment parallel = MemorySegment.ofArray(new byte[rows * rowBytes]);
        try (ExecutorService pool = Executors.newFixedThreadPool(6)) {
            List<Future<?>> done = new ArrayList<>();
            for (int r = 0; r < rows; r++) {
                int row = r;
                done.add(pool.submit(() -> shared.quantizeRow(matrix, row * n, n, parallel, (long) row * rowBytes)));
            }
            for (Future<?> f : done) {
                f.get();
            }
        }
        for (int r = 0; r < rows; r++) {
            float[] one = Arrays.copyOfRange(matrix, r * n, (r + 1) * n);
            byte[] expected = RoundTrip.quantize(type, one);
            byte[] actual = parallel.asSlice((long) r * rowBytes, rowBytes).toArray(ValueLayout.JAVA_BYTE);
            assertArrayEquals(expected, actual, "row " + r);
        }
    }
}
