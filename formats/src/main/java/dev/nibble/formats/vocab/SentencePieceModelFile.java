package dev.nibble.formats.vocab;

import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The parts of a SentencePiece {@code tokenizer.model} (a protobuf ModelProto) that tokenization needs, read by a
 * small hand-written protobuf decoder.
 */
record SentencePieceModelFile(List<String> pieces, float[] scores, int[] types, int modelType, boolean byteFallback,
                              int unkId, int bosId, int eosId, int padId, boolean treatWhitespaceAsSuffix,
                              String normalizerName, boolean addDummyPrefix, boolean removeExtraWhitespaces,
                              boolean escapeWhitespaces) {

    static final int UNIGRAM = 1;
    static final int BPE = 2;

    private static final int WIRE_VARINT = 0;
    private static final int WIRE_FIXED64 = 1;
    private static final int WIRE_LENGTH = 2;
    private static final int WIRE_FIXED32 = 5;

    /**
     * Real tokenizer.model files are under 10 MB (Gemma's, of 256,000 pieces, is 4 MB); the piece bound matches the
     * longest array a GGUF file may hold. Together they bound what a file can make this reader build.
     */
    static final long MAX_FILE_BYTES = 64L << 20;
    static final int MAX_PIECES = 1 << 22;

    static SentencePieceModelFile read(Path file) throws IOException {
        long size = Files.size(file);
        if (size > MAX_FILE_BYTES) {
            throw new FormatException(file, "protobuf", -1, "is " + size + " bytes, more than a SentencePiece model needs"
                    + " (at most " + MAX_FILE_BYTES + " are read)");
        }
        ByteBuffer buf = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        try {
            return new Reader(file, buf).model();
        } catch (RuntimeException e) {
            // A truncated or corrupt message surfaces as a buffer or index error somewhere inside the decoder.
            throw new FormatException(file, "protobuf", buf.position(), "truncated or corrupt SentencePiece model (" + e + ")", e);
        }
    }

    /** Decodes one ModelProto; field numbers are those of sentencepiece_model.proto. */
    private static final class Reader {
        private final Path file;
        private final ByteBuffer buf;

        Reader(Path file, ByteBuffer buf) {
            this.file = file;
            this.buf = buf;
        }

        SentencePieceModelFile model() throws FormatException {
            List<String> pieces = new ArrayList<>();
            List<Float> scores = new ArrayList<>();
            List<Integer> types = new ArrayList<>();
            // proto2 defaults of TrainerSpec and NormalizerSpec apply to fields the file leaves out.
            int modelType = UNIGRAM;
            boolean byteFallback = false;
            boolean suffix = false;
            int unk = 0;
            int bos = 1;
            int eos = 2;
            int pad = -1;
            String normalizer = "";
            boolean dummyPrefix = true;
            boolean removeExtra = true;
            boolean escape = true;
            while (buf.hasRemaining()) {
                long tagAt = buf.position();
                long tag = varint();
                int field = (int) (tag >>> 3);
                int wire = (int) (tag & 7);
                if (field == 1 && wire == WIRE_LENGTH) {
                    if (pieces.size() >= MAX_PIECES) {
                        throw new FormatException(file, "piece " + pieces.size(), tagAt, "more than " + MAX_PIECES
                                + " pieces, more than this reader accepts");
                    }
                    int end = messageEnd();
                    String piece = null;
                    float score = 0f;
                    int type = 1;
                    while (buf.position() < end) {
                        long t = varint();
                        int f = (int) (t >>> 3);
                        int w = (int) (t & 7);
                        if (f == 1 && w == WIRE_LENGTH) {
                            piece = string();
                        } else if (f == 2 && w == WIRE_FIXED32) {
                            score = buf.getFloat();
                        } else if (f == 3 && w == WIRE_VARINT) {
                            type = (int) varint();
                        } else {
                            skip(w);
                        }
                        within(end, tagAt);
                    }
                    if (piece == null) {
                        throw new FormatException(file, "piece " + pieces.size(), tagAt, "has no text");
                    }
                    pieces.add(piece);
                    scores.add(score);
                    types.add(type);
                } else if (field == 2 && wire == WIRE_LENGTH) {
                    int end = messageEnd();
                    while (buf.position() < end) {
                        long t = varint();
                        int f = (int) (t >>> 3);
                        int w = (int) (t & 7);
                        if (w != WIRE_VARINT) {
                            skip(w);
                            within(end, tagAt);
                            continue;
                        }
                        // int32 fields are sign-extended to 64-bit varints, so the cast restores -1.
                        int v = (int) varint();
                        switch (f) {
                            case 3 -> modelType = v;
                            case 24 -> suffix = v != 0;
                            case 35 -> byteFallback = v != 0;
                            case 40 -> unk = v;
                            case 41 -> bos = v;
                            case 42 -> eos = v;
                            case 43 -> pad = v;
                            default -> { }
                        }
                        within(end, tagAt);
                    }
                } else if (field == 3 && wire == WIRE_LENGTH) {
                    int end = messageEnd();
                    while (buf.position() < end) {
                        long t = varint();
                        int f = (int) (t >>> 3);
                        int w = (int) (t & 7);
                        if (f == 1 && w == WIRE_LENGTH) {
                            normalizer = string();
                        } else if (f == 3 && w == WIRE_VARINT) {
                            dummyPrefix = varint() != 0;
                        } else if (f == 4 && w == WIRE_VARINT) {
                            removeExtra = varint() != 0;
                        } else if (f == 5 && w == WIRE_VARINT) {
                            escape = varint() != 0;
                        } else {
                            skip(w);
                        }
                        within(end, tagAt);
                    }
                } else {
                    skip(wire);
                }
            }
            if (pieces.isEmpty()) {
                throw new FormatException(file, "pieces", -1, "no pieces: not a SentencePiece model");
            }
            float[] s = new float[scores.size()];
            int[] ty = new int[types.size()];
            for (int i = 0; i < s.length; i++) {
                s[i] = scores.get(i);
                ty[i] = types.get(i);
            }
            return new SentencePieceModelFile(pieces, s, ty, modelType, byteFallback, unk, bos, eos, pad, suffix,
                    normalizer, dummyPrefix, removeExtra, escape);
        }

        /** Refuses a field that ran past the end of the message holding it. */
        private void within(int end, long messageAt) throws FormatException {
            if (buf.position() > end) {
                throw new FormatException(file, "message", messageAt, "a field runs " + (buf.position() - end)
                        + " bytes past the end of its message at byte " + end);
            }
        }

        private long varint() throws FormatException {
            long result = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                byte b = buf.get();
                result |= (long) (b & 0x7f) << shift;
                if (b >= 0) {
                    return result;
                }
            }
            throw new FormatException(file, "varint", buf.position(), "longer than 10 bytes");
        }

        /** Reads a length prefix and returns where that message ends, checked against the file. */
        private int messageEnd() throws FormatException {
            long at = buf.position();
            long len = varint();
            if (len < 0 || len > buf.remaining()) {
                throw new FormatException(file, "length", at, len + " bytes but only " + buf.remaining() + " remain");
            }
            return buf.position() + (int) len;
        }

        private String string() throws FormatException {
            long at = buf.position();
            int end = messageEnd();
            ByteBuffer slice = buf.slice(buf.position(), end - buf.position());
            buf.position(end);
            try {
                return StandardCharsets.UTF_8.newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .decode(slice).toString();
            } catch (CharacterCodingException e) {
                throw new FormatException(file, "string", at, "not valid UTF-8");
            }
        }

        private void skip(int wire) throws FormatException {
            long at = buf.position();
            switch (wire) {
                case WIRE_VARINT -> varint();
                case WIRE_FIXED64 -> buf.position(buf.position() + 8);
                case WIRE_LENGTH -> buf.position(messageEnd());
                case WIRE_FIXED32 -> buf.position(buf.position() + 4);
                default -> throw new FormatException(file, "field", at, "unknown protobuf wire type " + wire);
            }
        }
    }
}
