package dev.nibble.formats.torch;

/**
 * A tensor as {@code torch._utils._rebuild_tensor_v2} describes it: a view of a storage, not yet checked.
 *
 * @param storage       the storage the view reads
 * @param storageOffset first element of the view, in storage elements
 * @param size          the shape, slowest-varying first
 * @param stride        elements to step per index of each dimension
 */
record PickledTensor(StorageRef storage, long storageOffset, long[] size, long[] stride) {}
