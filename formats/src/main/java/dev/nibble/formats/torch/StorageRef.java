package dev.nibble.formats.torch;

/**
 * A persistent id {@code ('storage', torch.XStorage, key, location, numel)}: the archive entry {@code data/<key>}.
 *
 * @param storageType the class name, e.g. {@code HalfStorage}
 * @param key         the entry name under {@code data/}
 * @param numel       elements of {@code storageType} in the entry
 */
record StorageRef(String storageType, String key, long numel) {}
