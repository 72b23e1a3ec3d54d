package dev.nibble.converter;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Tells how many bytes may still be written in a folder; replaceable so that a full disk can be simulated. */
@FunctionalInterface
public interface DiskSpace {

    /** The file system's usable space, as {@link java.nio.file.FileStore#getUsableSpace()} reports it. */
    DiskSpace FILE_STORE = dir -> Files.getFileStore(dir).getUsableSpace();

    long usableBytes(Path dir) throws IOException;
}
