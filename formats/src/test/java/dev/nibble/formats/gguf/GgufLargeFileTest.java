package dev.nibble.formats.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A file past 2 GiB maps and reads in place; a sparse file keeps this fast and takes almost no disk. */
class GgufLargeFileTest {

    @TempDir
    Path dir;

    @Test
    void tensorBeyondTwoGibibytesIsReadInPlace() throws IOException {
        long bigBytes = (1L << 31) + 4096; // a tensor larger than 2 GiB pushes the next one past byte 2^31
        RawGguf raw = RawGguf.header(3, 2, 0)
                .tensor("big", RawGguf.TYPE_F32, 0, bigBytes / 4)
                .tensor("tail", RawGguf.TYPE_F32, bigBytes, 8)
                .pad(32)
                .bytes(11, 22, 33);
        long dataOffset = raw.size() - 3;
        Path file = raw.writeTo(dir.resolve("large.gguf"));
        long tailOffset = dataOffset + bigBytes;
        try (RandomAccessFile extend = new RandomAccessFile(file.toFile(), "rw")) {
            extend.setLength(tailOffset + 32);
            extend.seek(tailOffset + 31);
            extend.write(0x5A);
        }
        try (GgufFile f = GgufFile.open(file)) {
            assertEquals(dataOffset, f.dataOffset());
            GgufTensor big = f.tensor("big").orElseThrow();
            GgufTensor tail = f.tensor("tail").orElseThrow();
            assertEquals(bigBytes, big.data().byteSize());
            assertEquals(33, big.data().get(ValueLayout.JAVA_BYTE, 2));
            assertEquals(tailOffset, tail.fileOffset());
            assertEquals(0x5A, tail.data().get(ValueLayout.JAVA_BYTE, 31));
        }
    }
}
