package dev.nibble.runtime.nativelib;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/** Downcall handles for libnibble_cpu, each named after the C symbol it binds (see kernels-c/include/nibble.h). */
public final class NibbleCpu {

    private static final SymbolLookup LIB = NativeLibrary.load("nibble_cpu")
            .orElseThrow(() -> new IllegalStateException(
                    "libnibble_cpu for " + NativeLibrary.platform() + " is not in this build; rebuild with ./nibble --rebuild"));
    private static final Linker LINKER = Linker.nativeLinker();

    private static final MethodHandle nb_version = bind("nb_version", FunctionDescriptor.of(ValueLayout.JAVA_INT));
    private static final MethodHandle nb_cpu_features = bind("nb_cpu_features", FunctionDescriptor.of(ValueLayout.JAVA_INT));

    /** CPU feature bits, as defined in nibble.h. */
    public static final int AVX2 = 1, FMA = 1 << 1, F16C = 1 << 2, AVX512F = 1 << 3, AVX512BW = 1 << 4,
            AVX512VNNI = 1 << 5, AVXVNNI = 1 << 6;

    private NibbleCpu() {}

    private static MethodHandle bind(String symbol, FunctionDescriptor descriptor) {
        return LINKER.downcallHandle(
                LIB.find(symbol).orElseThrow(() -> new IllegalStateException("libnibble_cpu lacks symbol " + symbol)),
                descriptor, Linker.Option.critical(false));
    }

    public static int version() {
        try {
            return (int) nb_version.invokeExact();
        } catch (Throwable t) {
            throw new IllegalStateException("nb_version failed", t);
        }
    }

    public static int cpuFeatures() {
        try {
            return (int) nb_cpu_features.invokeExact();
        } catch (Throwable t) {
            throw new IllegalStateException("nb_cpu_features failed", t);
        }
    }

    /** Human-readable list of the feature bits, e.g. {@code avx2 fma avx512f}. */
    public static String describeFeatures(int bits) {
        String[] names = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni", "avxvnni"};
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < names.length; i++) {
            if ((bits & (1 << i)) != 0) {
                sb.append(sb.isEmpty() ? "" : " ").append(names[i]);
            }
        }
        return sb.isEmpty() ? "scalar" : sb.toString();
    }
}
