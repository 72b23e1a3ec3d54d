package dev.nibble.runtime.tokenizer;

import java.util.List;

/** Texts beyond the reference set: whitespace runs, scripts and symbols outside small vocabularies, special-token lookalikes. */
final class ExtraTexts {
    private ExtraTexts() {
    }

    static final List<String> ALL = List.of(
            " ", "  leading", "a  b   c    d", "\t\tx\t", "\r\n\r\nwindows\r\n", "end with newline\n", "ÿ þ ß",
            "안녕하세요 세계", "नमस्ते दुनिया", "สวัสดีชาวโลก", "e\u0301 combining", "𝕏 math 𝔸", "🏳️‍🌈 flag",
            "x<s>y</s>z", "<s><s></s>", "<unk> and <0x41>", "12345678901234567890", "nul\u0000byte", "ﬁ ligature",
            "The jury said it was \"surprising\"; (a) -- [b] {c} ~d~ @e #f $g %h ^i &j *k",
            "repeated    spaces\t\ttabs\n\n\nnewlines", "mixed English и русский 和中文 and العربية");
}
