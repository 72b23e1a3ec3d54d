package dev.nibble.formats.torch;

import dev.nibble.formats.FormatException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Reads the {@code data.pkl} of a PyTorch checkpoint as a state dict without executing anything.
 *
 * <p>A pickle is a program for a stack machine whose GLOBAL and REDUCE opcodes import and call arbitrary Python
 * callables; that is how a malicious checkpoint runs code. This interpreter knows only the handful of globals a
 * state dict needs (OrderedDict, the tensor rebuild functions, storage classes) and rejects any other global when
 * the GLOBAL opcode names it, before anything could be called. "Calling" an allowed global builds a plain Java
 * value (a map, a {@link PickledTensor}).
 */
final class RestrictedUnpickler {

    /** Caps far above what a state dict of tens of thousands of tensors needs, so hostile input fails fast. */
    static final int MAX_STACK = 1 << 20;
    static final int MAX_MEMO = 1 << 22;
    static final int MAX_GLOBAL_LINE = 256;
    /**
     * Totals over the whole pickle, which bound the objects it can make this reader build however it is written (a
     * one-byte opcode can build a list): values pushed or memoized (a state dict needs about 30 per tensor, so this
     * allows over 100,000 tensors; each costs at most a few dozen bytes of heap), and string bytes.
     */
    static final long MAX_VALUES = 1 << 22;
    static final long MAX_STRING_BYTES = 1 << 26;

    private static final Pattern STORAGE_CLASS = Pattern.compile("[A-Z][A-Za-z0-9]*Storage");

    /** An allowed global: the only things REDUCE may apply, and only in the ways {@link #call} knows. */
    private record Global(String module, String name) {
        String dotted() {
            return module + "." + name;
        }
    }

    /** A Python tuple; lists are {@link ArrayList}s and dicts {@link LinkedHashMap}s. */
    private record Tuple(List<Object> items) {}

    /** Python's None (the stack holds no nulls so that every value has a type to name in errors). */
    private enum None { NONE }

    private static final Object MARK = new Object();

    private final Path file;
    private final String item;
    private final byte[] code;
    private int pos;
    private int opcodeAt;
    private final List<Object> stack = new ArrayList<>();
    private final Map<Long, Object> memo = new HashMap<>();
    private long values;
    private long stringBytes;

    private RestrictedUnpickler(Path file, String item, byte[] code) {
        this.file = file;
        this.item = item;
        this.code = code;
    }

    /**
     * Interprets {@code code} and returns the state dict it builds, keys in pickle order.
     *
     * @param file the checkpoint, for error messages
     * @param item the pickle's entry name, for error messages
     */
    static Map<String, PickledTensor> readStateDict(Path file, String item, byte[] code) throws FormatException {
        RestrictedUnpickler u = new RestrictedUnpickler(file, item, code);
        Object result;
        try {
            result = u.run();
        } catch (FormatException e) {
            throw e;
        } catch (RuntimeException e) {
            // ClassCastException, IndexOutOfBounds and the like: the pickle's values do not have the shapes a state dict needs.
            throw new FormatException(file, item, u.opcodeAt, "malformed pickle (" + e.getClass().getSimpleName()
                    + (e.getMessage() == null ? "" : ": " + e.getMessage()) + ")", e);
        }
        if (!(result instanceof Map<?, ?> dict)) {
            throw new FormatException(file, item, -1, "the pickle holds a " + typeName(result) + ", not a state dict");
        }
        Map<String, PickledTensor> tensors = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : dict.entrySet()) {
            if (!(e.getKey() instanceof String name)) {
                throw new FormatException(file, item, -1, "state-dict key " + e.getKey() + " is not a string");
            }
            if (!(e.getValue() instanceof PickledTensor t)) {
                throw new FormatException(file, item, -1, "state-dict entry '" + name + "' is a " + typeName(e.getValue())
                        + ", not a tensor; nibble reads flat state dicts of tensors");
            }
            tensors.put(name, t);
        }
        return tensors;
    }

    private Object run() throws FormatException {
        while (true) {
            opcodeAt = pos;
            int op = u8();
            switch (op) {
                case 0x80 -> { // PROTO
                    int version = u8();
                    if (version < 2 || version > 5) {
                        throw error("pickle protocol " + version + " is not supported (PyTorch writes 2)");
                    }
                }
                case 0x95 -> { // FRAME: a length hint for buffered readers; the whole pickle is in memory already
                    long length = s64();
                    if (length < 0 || length > code.length - pos) {
                        throw error("frame of " + length + " bytes runs past the end of the pickle");
                    }
                }
                case '}' -> push(new LinkedHashMap<>()); // EMPTY_DICT
                case 'd' -> { // DICT
                    List<Object> items = popMark();
                    Map<Object, Object> dict = new LinkedHashMap<>();
                    if (items.size() % 2 != 0) {
                        throw error("DICT with an odd number of items");
                    }
                    for (int i = 0; i < items.size(); i += 2) {
                        dict.put(key(items.get(i)), items.get(i + 1));
                    }
                    push(dict);
                }
                case ']' -> push(new ArrayList<>()); // EMPTY_LIST
                case 'l' -> push(new ArrayList<>(popMark())); // LIST
                case 'a' -> { // APPEND
                    Object value = pop();
                    list(peek()).add(value);
                }
                case 'e' -> { // APPENDS
                    List<Object> items = popMark();
                    list(peek()).addAll(items);
                }
                case ')' -> push(new Tuple(List.of())); // EMPTY_TUPLE
                case 't' -> push(new Tuple(popMark())); // TUPLE
                case 0x85 -> push(tupleOf(1)); // TUPLE1
                case 0x86 -> push(tupleOf(2)); // TUPLE2
                case 0x87 -> push(tupleOf(3)); // TUPLE3
                case '(' -> push(MARK); // MARK
                case 'q' -> memoize(u8()); // BINPUT
                case 'r' -> memoize(u32()); // LONG_BINPUT
                case 0x94 -> memoize(memo.size()); // MEMOIZE
                case 'h' -> push(recall(u8())); // BINGET
                case 'j' -> push(recall(u32())); // LONG_BINGET
                case 'J' -> push((long) s32()); // BININT
                case 'K' -> push((long) u8()); // BININT1
                case 'M' -> push((long) (u8() | u8() << 8)); // BININT2
                case 0x8a -> push(long1()); // LONG1
                case 'G' -> push(Double.longBitsToDouble(bigEndianLong())); // BINFLOAT
                case 'N' -> push(None.NONE); // NONE
                case 0x88 -> push(Boolean.TRUE); // NEWTRUE
                case 0x89 -> push(Boolean.FALSE); // NEWFALSE
                case 'X' -> push(utf8(u32())); // BINUNICODE
                case 0x8c -> push(utf8(u8())); // SHORT_BINUNICODE
                case 0x8d -> push(utf8(s64())); // BINUNICODE8
                case 'U' -> push(latin1(u8())); // SHORT_BINSTRING
                case 'T' -> push(latin1(s32())); // BINSTRING
                case 'c' -> { // GLOBAL
                    String module = line();
                    String name = line();
                    push(global(module, name));
                }
                case 0x93 -> { // STACK_GLOBAL
                    Object name = pop();
                    Object module = pop();
                    if (!(module instanceof String m) || !(name instanceof String n)) {
                        throw error("STACK_GLOBAL needs two strings, got " + typeName(module) + " and " + typeName(name));
                    }
                    push(global(m, n));
                }
                case 'Q' -> push(persistentId(pop())); // BINPERSID
                case 'R' -> { // REDUCE
                    Object args = pop();
                    Object callable = pop();
                    push(call(callable, args));
                }
                case 'b' -> build(); // BUILD
                case 's' -> { // SETITEM
                    Object value = pop();
                    Object key = pop();
                    dict(peek()).put(key(key), value);
                }
                case 'u' -> { // SETITEMS
                    List<Object> items = popMark();
                    if (items.size() % 2 != 0) {
                        throw error("SETITEMS with an odd number of items");
                    }
                    Map<Object, Object> dict = dict(peek());
                    for (int i = 0; i < items.size(); i += 2) {
                        dict.put(key(items.get(i)), items.get(i + 1));
                    }
                }
                case '.' -> { // STOP
                    Object result = pop();
                    if (!stack.isEmpty()) {
                        throw error("STOP leaves " + stack.size() + " values on the stack");
                    }
                    return result;
                }
                default -> throw error(String.format("opcode 0x%02x is not one a state dict uses; refusing to load", op));
            }
        }
    }

    private Global global(String module, String name) throws FormatException {
        boolean allowed = switch (module) {
            case "collections" -> name.equals("OrderedDict");
            case "torch._utils" -> name.equals("_rebuild_tensor_v2") || name.equals("_rebuild_tensor");
            case "torch" -> STORAGE_CLASS.matcher(name).matches()
                    || name.equals("float32") || name.equals("float16") || name.equals("bfloat16");
            default -> false;
        };
        if (!allowed) {
            throw error("global '" + printable(module) + "." + printable(name)
                    + "' is not allowed in a checkpoint (only state-dict types are); refusing to load");
        }
        return new Global(module, name);
    }

    private Object call(Object callable, Object args) throws FormatException {
        if (!(callable instanceof Global g)) {
            throw error("REDUCE applies a " + typeName(callable) + ", which is not callable");
        }
        if (!(args instanceof Tuple(List<Object> a))) {
            throw error("REDUCE of " + g.dotted() + " needs an argument tuple, got " + typeName(args));
        }
        return switch (g.dotted()) {
            case "collections.OrderedDict" -> {
                if (!a.isEmpty()) {
                    throw error("OrderedDict is called with " + a.size() + " arguments; state dicts build it empty");
                }
                yield new LinkedHashMap<>();
            }
            case "torch._utils._rebuild_tensor_v2" -> {
                // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
                if (a.size() != 6 && a.size() != 7) {
                    throw error("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + a.size());
                }
                yield rebuild(a);
            }
            case "torch._utils._rebuild_tensor" -> {
                if (a.size() != 4) {
                    throw error("_rebuild_tensor takes 4 arguments, got " + a.size());
                }
                yield rebuild(a);
            }
            default -> throw error(g.dotted() + " is not callable in a state dict");
        };
    }

    private PickledTensor rebuild(List<Object> a) throws FormatException {
        if (!(a.get(0) instanceof StorageRef storage)) {
            throw error("tensor storage is a " + typeName(a.get(0)) + ", not a persistent storage reference");
        }
        long offset = integer(a.get(1), "storage_offset");
        long[] size = integers(a.get(2), "size");
        long[] stride = integers(a.get(3), "stride");
        if (offset < 0 || size.length != stride.length) {
            throw error("tensor view has storage offset " + offset + ", " + size.length + " sizes and " + stride.length + " strides");
        }
        return new PickledTensor(storage, offset, size, stride);
    }

    private StorageRef persistentId(Object pid) throws FormatException {
        if (!(pid instanceof Tuple(List<Object> p)) || p.size() != 5 || !"storage".equals(p.get(0))) {
            throw error("persistent id must be ('storage', type, key, location, numel), got " + typeName(pid));
        }
        if (!(p.get(1) instanceof Global g) || !STORAGE_CLASS.matcher(g.name()).matches() || !(p.get(2) instanceof String key)) {
            throw error("persistent id names a " + typeName(p.get(1)) + " storage under key " + typeName(p.get(2)));
        }
        long numel = integer(p.get(4), "storage numel");
        if (numel < 0) {
            throw error("storage '" + key + "' has " + numel + " elements");
        }
        return new StorageRef(g.name(), key, numel);
    }

    private void build() throws FormatException {
        Object state = pop();
        Object target = peek();
        // OrderedDict.__reduce__ passes the instance __dict__ (a state dict's _metadata) as BUILD state: attributes nibble ignores.
        if (!(target instanceof Map<?, ?>) || !(state instanceof Map<?, ?> || state == None.NONE)) {
            throw error("BUILD sets state " + typeName(state) + " on a " + typeName(target) + "; only dicts take state here");
        }
    }

    private long integer(Object value, String what) throws FormatException {
        if (!(value instanceof Long l)) {
            throw error(what + " is a " + typeName(value) + ", not an integer");
        }
        return l;
    }

    private long[] integers(Object value, String what) throws FormatException {
        if (!(value instanceof Tuple(List<Object> items))) {
            throw error(what + " is a " + typeName(value) + ", not a tuple of integers");
        }
        long[] out = new long[items.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = integer(items.get(i), what + "[" + i + "]");
        }
        return out;
    }

    /** Dict keys are limited to immutable scalars so hashing can never recurse through a self-referencing list. */
    private Object key(Object key) throws FormatException {
        if (key instanceof String || key instanceof Long || key instanceof Boolean || key instanceof Double || key == None.NONE) {
            return key;
        }
        throw error("dict key is a " + typeName(key) + "; state dicts use string keys");
    }

    @SuppressWarnings("unchecked")
    private List<Object> list(Object value) throws FormatException {
        if (!(value instanceof ArrayList<?>)) {
            throw error("APPEND to a " + typeName(value) + ", not a list");
        }
        return (List<Object>) value;
    }

    @SuppressWarnings("unchecked")
    private Map<Object, Object> dict(Object value) throws FormatException {
        if (!(value instanceof LinkedHashMap<?, ?>)) {
            throw error("SETITEM on a " + typeName(value) + ", not a dict");
        }
        return (Map<Object, Object>) value;
    }

    private Tuple tupleOf(int n) throws FormatException {
        if (stack.size() < n) {
            throw error("TUPLE" + n + " needs " + n + " values, the stack has " + stack.size());
        }
        List<Object> items = new ArrayList<>(stack.subList(stack.size() - n, stack.size()));
        for (Object o : items) {
            if (o == MARK) {
                throw error("TUPLE" + n + " would take a MARK");
            }
        }
        stack.subList(stack.size() - n, stack.size()).clear();
        return new Tuple(items);
    }

    private List<Object> popMark() throws FormatException {
        for (int i = stack.size() - 1; i >= 0; i--) {
            if (stack.get(i) == MARK) {
                List<Object> items = new ArrayList<>(stack.subList(i + 1, stack.size()));
                stack.subList(i, stack.size()).clear();
                return items;
            }
        }
        throw error("no MARK on the stack");
    }

    private void push(Object value) throws FormatException {
        if (stack.size() >= MAX_STACK) {
            throw error("stack deeper than " + MAX_STACK);
        }
        count();
        stack.add(value);
    }

    /** Counts one value built (pushed or memoized) against {@link #MAX_VALUES}. */
    private void count() throws FormatException {
        if (++values > MAX_VALUES) {
            throw error("the pickle builds more than " + MAX_VALUES + " values in all, more than a state dict of 100,000"
                    + " tensors needs; refusing to load");
        }
    }

    private Object pop() throws FormatException {
        Object value = peek();
        stack.removeLast();
        return value;
    }

    private Object peek() throws FormatException {
        if (stack.isEmpty()) {
            throw error("stack underflow");
        }
        Object value = stack.getLast();
        if (value == MARK) {
            throw error("a MARK where a value was expected");
        }
        return value;
    }

    private void memoize(long index) throws FormatException {
        if (memo.size() >= MAX_MEMO && !memo.containsKey(index)) {
            throw error("memo larger than " + MAX_MEMO + " entries");
        }
        count();
        memo.put(index, peek());
    }

    private Object recall(long index) throws FormatException {
        Object value = memo.get(index);
        if (value == null) {
            throw error("memo slot " + index + " is empty");
        }
        return value;
    }

    private long long1() throws FormatException {
        int n = u8();
        if (n > 8) {
            throw error("LONG1 of " + n + " bytes does not fit in 64 bits");
        }
        need(n);
        long value = 0;
        for (int i = 0; i < n; i++) {
            value |= (code[pos + i] & 0xFFL) << (8 * i);
        }
        if (n > 0 && n < 8 && (code[pos + n - 1] & 0x80) != 0) {
            value |= -1L << (8 * n); // two's complement: sign-extend
        }
        pos += n;
        return value;
    }

    private String utf8(long length) throws FormatException {
        byte[] bytes = bytes(length);
        try {
            return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw error("string is not valid UTF-8");
        }
    }

    private String latin1(long length) throws FormatException {
        return new String(bytes(length), StandardCharsets.ISO_8859_1);
    }

    private byte[] bytes(long length) throws FormatException {
        if (length < 0 || length > code.length - pos) {
            throw error("string of " + length + " bytes runs past the end of the pickle");
        }
        if (length > MAX_STRING_BYTES - stringBytes) {
            throw error("string of " + length + " bytes would bring the pickle's strings to " + (stringBytes + length)
                    + " bytes in all, more than a state dict needs (" + MAX_STRING_BYTES + "); refusing to load");
        }
        stringBytes += length;
        byte[] out = new byte[(int) length];
        System.arraycopy(code, pos, out, 0, out.length);
        pos += out.length;
        return out;
    }

    private String line() throws FormatException {
        int start = pos;
        while (pos < code.length && code[pos] != '\n') {
            if (pos - start >= MAX_GLOBAL_LINE) {
                throw error("GLOBAL name longer than " + MAX_GLOBAL_LINE + " bytes");
            }
            pos++;
        }
        if (pos >= code.length) {
            throw error("GLOBAL name runs past the end of the pickle");
        }
        String s = new String(code, start, pos - start, StandardCharsets.ISO_8859_1);
        pos++;
        return s;
    }

    private int u8() throws FormatException {
        need(1);
        return code[pos++] & 0xFF;
    }

    private int s32() throws FormatException {
        need(4);
        int v = (code[pos] & 0xFF) | (code[pos + 1] & 0xFF) << 8 | (code[pos + 2] & 0xFF) << 16 | code[pos + 3] << 24;
        pos += 4;
        return v;
    }

    private long u32() throws FormatException {
        return s32() & 0xFFFFFFFFL;
    }

    private long s64() throws FormatException {
        long low = u32();
        long high = u32();
        return low | high << 32;
    }

    private long bigEndianLong() throws FormatException {
        need(8);
        long v = 0;
        for (int i = 0; i < 8; i++) {
            v = v << 8 | (code[pos + i] & 0xFF);
        }
        pos += 8;
        return v;
    }

    private void need(int n) throws FormatException {
        if (code.length - pos < n) {
            throw error("pickle ends " + (code.length - pos) + " bytes into a " + n + "-byte operand (truncated?)");
        }
    }

    private FormatException error(String problem) {
        return new FormatException(file, item, opcodeAt, problem);
    }

    private static String typeName(Object value) {
        return switch (value) {
            case null -> "nothing";
            case String _ -> "string";
            case Long _ -> "int";
            case Double _ -> "float";
            case Boolean _ -> "bool";
            case None _ -> "None";
            case Tuple _ -> "tuple";
            case ArrayList<?> _ -> "list";
            case Map<?, ?> _ -> "dict";
            case Global g -> "global " + g.dotted();
            case StorageRef _ -> "storage";
            case PickledTensor _ -> "tensor";
            default -> "value";
        };
    }

    /** Names from a hostile pickle go into messages; keep them to visible ASCII and a sane length. */
    private static String printable(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length() && i < 80; i++) {
            char c = s.charAt(i);
            b.append(c >= 0x20 && c < 0x7F ? c : '?');
        }
        return s.length() > 80 ? b + "..." : b.toString();
    }
}
