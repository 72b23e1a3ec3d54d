package dev.nibble.formats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The target holds its old content or the complete new one; nothing planted, special or read by the run is replaced. */
class AtomicOutputFileTest {

    @TempDir
    Path dir;

    private List<String> names() {
        String[] names = dir.toFile().list();
        Arrays.sort(names);
        return List.of(names);
    }

    private static IOException refused(Path target, boolean overwrite, List<Path> inputs, String... parts) {
        IOException e = assertThrows(IOException.class,
                () -> AtomicOutputFile.write(target, "new".getBytes(StandardCharsets.UTF_8), overwrite, inputs));
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "'" + e.getMessage() + "' should mention '" + p + "'");
        }
        return e;
    }

    @Test
    void theTemporaryFileIsNewHiddenAndUniqueAndGoneAfterCommit() throws IOException {
        Path target = dir.resolve("out.bin");
        try (AtomicOutputFile a = AtomicOutputFile.create(target, false, List.of());
             AtomicOutputFile b = AtomicOutputFile.create(target, false, List.of())) {
            assertNotEquals(a.temporary(), b.temporary(), "two writers of one target never share a temporary file");
            assertTrue(a.temporary().getFileName().toString().matches("\\.out\\.bin\\.[0-9a-z]+\\.tmp"), a.temporary().toString());
            a.write(ByteBuffer.wrap(new byte[] {1, 2}));
            a.commit();
        }
        assertEquals(List.of("out.bin"), names(), "the uncommitted writer's temporary file is deleted on close");
        assertEquals(2, Files.size(target));
    }

    @Test
    void aLinkAtAnOldStyleTemporaryNameIsNeverFollowed() throws IOException {
        Path victim = Files.writeString(dir.resolve("victim"), "precious");
        Files.createSymbolicLink(dir.resolve("out.bin.tmp"), victim);
        AtomicOutputFile.write(dir.resolve("out.bin"), "new".getBytes(StandardCharsets.UTF_8), false, List.of());
        assertEquals("precious", Files.readString(victim));
        assertEquals("new", Files.readString(dir.resolve("out.bin")));
        assertTrue(Files.isSymbolicLink(dir.resolve("out.bin.tmp")));
    }

    @Test
    void onlyARegularFileIsReplacedEvenWithOverwrite() throws Exception {
        Path fifo = dir.resolve("fifo");
        assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
        Path kept = Files.writeString(dir.resolve("kept"), "kept");
        Path link = Files.createSymbolicLink(dir.resolve("link"), kept);
        Path folder = Files.createDirectory(dir.resolve("folder"));
        refused(fifo, true, List.of(), fifo.toString(), "is a device, FIFO or socket, not a regular file", "choose another path");
        refused(link, true, List.of(), link.toString(), "is a symbolic link, not a regular file");
        refused(folder, true, List.of(), folder.toString(), "is a folder, not a regular file");
        assertEquals("kept", Files.readString(kept));
        assertTrue(Files.isSymbolicLink(link) && Files.isDirectory(folder) && !Files.isRegularFile(fifo));
        assertEquals(List.of("fifo", "folder", "kept", "link"), names(), "no temporary file is left");
    }

    @Test
    void anInputIsNeverReplacedUnderAnyName() throws IOException {
        Path input = Files.writeString(dir.resolve("input"), "input");
        Path hardLink = Files.createLink(dir.resolve("alias"), input);
        refused(input, true, List.of(input), input.toString(), "an input of this run", "another path");
        refused(hardLink, true, List.of(input), "alias is the same file as " + input);
        assertEquals("input", Files.readString(input));
    }

    @Test
    void withoutOverwriteAnExistingTargetIsKeptEvenWhenItAppearsWhileWriting() throws IOException {
        Path target = dir.resolve("out.bin");
        Files.writeString(target, "first");
        refused(target, false, List.of(), target.toString(), "already exists", "--force");
        Files.delete(target);
        try (AtomicOutputFile out = AtomicOutputFile.create(target, false, List.of())) {
            out.write(ByteBuffer.wrap("second".getBytes(StandardCharsets.UTF_8)));
            Files.writeString(target, "another run");
            IOException e = assertThrows(IOException.class, out::commit);
            assertTrue(e.getMessage().contains("already exists"), e.getMessage());
        }
        assertEquals("another run", Files.readString(target));
        assertEquals(List.of("out.bin"), names());
    }

    @Test
    void overwriteReplacesARegularFileAtOnce() throws IOException {
        Path target = Files.writeString(dir.resolve("out.bin"), "old");
        try (AtomicOutputFile out = AtomicOutputFile.create(target, true, List.of())) {
            out.write(ByteBuffer.wrap("new".getBytes(StandardCharsets.UTF_8)));
            assertEquals("old", Files.readString(target), "the target is untouched until the commit");
            out.commit();
        }
        assertEquals("new", Files.readString(target));
        assertEquals(List.of("out.bin"), names());
    }

    @Test
    void aMissingFolderIsNamed() {
        Path target = dir.resolve("no/such/out.bin");
        refused(target, false, List.of(), target.toString(), "the folder " + dir.resolve("no/such") + " does not exist");
    }
}
