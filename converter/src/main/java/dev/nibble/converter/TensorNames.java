package dev.nibble.converter;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The Hugging Face Llama state-dict names and their GGUF (llama.cpp) counterparts. */
public final class TensorNames {

    public static final String HF_TOKEN_EMBEDDING = "model.embed_tokens.weight";
    public static final String HF_OUTPUT_NORM = "model.norm.weight";
    public static final String HF_OUTPUT = "lm_head.weight";

    public static final String TOKEN_EMBEDDING = "token_embd.weight";
    public static final String OUTPUT_NORM = "output_norm.weight";
    public static final String OUTPUT = "output.weight";
    /** Llama 3.1 RoPE frequency divisors, generated from config.json rather than read. */
    public static final String ROPE_FREQS = "rope_freqs.weight";

    private static final Pattern GGUF_LAYER = Pattern.compile("blk\\.(\\d{1,9})\\..+");

    /** Per-layer tensors: Hugging Face suffix and GGUF suffix, in the order GGUF files list them. */
    static final String[][] LAYER_TENSORS = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };

    private TensorNames() {
    }

    /** Whether a checkpoint tensor carries no weights a GGUF file needs (RoPE's cached inverse frequencies). */
    public static boolean isIgnored(String hfName) {
        return hfName.endsWith(".rotary_emb.inv_freq");
    }

    /** The layer index of a {@code blk.N.*} name, or -1 for tensors outside the layers. */
    public static int layerOf(String ggufName) {
        Matcher m = GGUF_LAYER.matcher(ggufName);
        return m.matches() ? Integer.parseInt(m.group(1)) : -1;
    }
}
