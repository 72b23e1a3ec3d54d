package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;
import dev.nibble.kernels.NativeLibrary;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/**
 * Q4_K and Q6_K rows quantized by libnibble_cpu's {@code nb_quantize_row}: a C port of {@link Q4KQuantizer} and
 * {@link Q6KQuantizer} that writes the same bytes (the Java classes stay the reference it is tested against), with an
 * AVX2 search about three times the Java speed. IQ4_NL stays in Java: a scalar C port was no faster than the JIT's code.
 */
final class NativeQuantizer implements Quantizer {

    /** libnibble_cpu, or empty when it is not in this build or cannot be loaded here. */
    private static final Optional<SymbolLookup> LIBRARY = load();
    private static final Optional<MethodHandle> QUANTIZE_ROW = bind("nb_quantize_row", false);
    /** nb_quantize_row_isa: the same with the instruction-set path named (tests hold every path to the Java bytes). */
    private static final Optional<MethodHandle> QUANTIZE_ROW_ISA = bind("nb_quantize_row_isa", true);

    private final GgmlType type;
    /** The instruction-set path forced (0 scalar, 1 AVX2, 2 AVX-512), or -1: the library's default. */
    private final int isa;

    private NativeQuantizer(GgmlType type, int isa) {
        this.type = type;
        this.isa = isa;
    }

    /** The native quantizer for {@code reference}'s type when the library is loaded, else {@code reference} itself. */
    static Quantizer orJava(Quantizer reference) {
        return QUANTIZE_ROW.isPresent() ? of(reference.type()) : reference;
    }

    /** The native quantizer for Q4_K or Q6_K; the library must be {@link #available()}. */
    static NativeQuantizer of(GgmlType type) {
        return of(type, -1);
    }

    /**
     * The native quantizer for Q4_K or Q6_K on instruction-set path {@code isa} (0 scalar, 1 AVX2, 2 AVX-512; -1 the
     * library's default), so that tests can hold each path to the Java bytes; quantizing on a path the CPU lacks is an
     * {@link IllegalStateException} (see {@link #supports(int)}).
     */
    static NativeQuantizer of(GgmlType type, int isa) {
        if (type != GgmlType.Q4_K && type != GgmlType.Q6_K) {
            throw new IllegalArgumentException("no native quantizer for " + type);
        }
        if (isa < -1 || isa > 2) {
            throw new IllegalArgumentException("unknown instruction-set path " + isa);
        }
        return new NativeQuantizer(type, isa);
    }

    /** Whether this CPU has instruction-set path {@code isa} (nb_isa_best). */
    static boolean supports(int isa) {
        try {
            MethodHandle best = Linker.nativeLinker().downcallHandle(LIBRARY.orElseThrow().find("nb_isa_best").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT));
            return isa <= (int) best.invokeExact();
        } catch (Throwable t) {
            throw new IllegalStateException("nb_isa_best failed", t);
        }
    }

    /** Whether the native quantizers are available in this process. */
    static boolean available() {
        return QUANTIZE_ROW.isPresent();
    }

    @Override
    public GgmlType type() {
        return type;
    }

    @Override
    public void quantizeRow(float[] src, int srcOffset, int n, MemorySegment dst, long dstByteOffset) {
        int bytes = BlockQuantizer.checkRow(type, src, srcOffset, n, dst, dstByteOffset);
        MemorySegment in = MemorySegment.ofArray(src).asSlice(4L * srcOffset, 4L * n);
        MemorySegment out = dst.asSlice(dstByteOffset, bytes);
        int status;
        try {
            status = isa < 0 ? (int) QUANTIZE_ROW.orElseThrow().invokeExact(type.id(), in, (long) n, out)
                    : (int) QUANTIZE_ROW_ISA.orElseThrow().invokeExact(isa, type.id(), in, (long) n, out);
        } catch (Throwable t) {
            throw new IllegalStateException("nb_quantize_row failed", t);
        }
        if (status != 0) {
            // The row was checked above, so this is a broken library, not bad input.
            throw new IllegalStateException("nb_quantize_row(" + type + ", n=" + n + ") returned status " + status);
        }
    }

    private static Optional<SymbolLookup> load() {
        try {
            return NativeLibrary.load("nibble_cpu");
        } catch (RuntimeException | LinkageError e) {
            // No native access or no loadable library: the Java quantizers do the same work, only slower.
            return Optional.empty();
        }
    }

    private static Optional<MethodHandle> bind(String symbol, boolean withIsa) {
        try {
            Linker linker = Linker.nativeLinker();
            FunctionDescriptor row = FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                    ValueLayout.JAVA_LONG, ValueLayout.ADDRESS);
            // critical(true): a row takes about a millisecond, and the weights can stay in their Java array.
            return LIBRARY
                    .flatMap(lib -> lib.find(symbol))
                    .map(address -> linker.downcallHandle(address,
                            withIsa ? row.insertArgumentLayouts(0, ValueLayout.JAVA_INT) : row,
                            Linker.Option.critical(true)));
        } catch (RuntimeException | LinkageError e) {
            // No native access or no loadable library: the Java quantizers do the same work, only slower.
            return Optional.empty();
        }
    }
}
