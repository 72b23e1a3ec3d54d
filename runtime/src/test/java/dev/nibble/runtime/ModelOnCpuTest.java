package dev.nibble.runtime;

/** {@link ModelTest}'s forward-pass tests on the CPU backend (the native kernels). */
class ModelOnCpuTest extends ModelTest {

    @Override
    Backend backend() {
        return new CpuBackend(0);
    }
}
