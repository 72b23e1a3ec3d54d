"""Makes test-data/chat/hf-chat-refs.json with Hugging Face transformers (run on a machine that has it):
the rendered chat prompt and its ids from apply_chat_template, for several conversations and templates.

    python3 test-data/chat/make_refs.py test-data OUT.json
"""
import json
import sys

import transformers
from transformers import AutoTokenizer

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CONVERSATIONS = {
    "user_only": [{"role": "user", "content": "What is the capital of France?"}],
    "system_user": [{"role": "system", "content": "You are a terse assistant."},
                    {"role": "user", "content": "Name three rivers."}],
    "three_turns": [{"role": "user", "content": "Hi there"},
                    {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "Tell me a joke about juries."}],
    "system_five_turns": [{"role": "system", "content": "Answer in one sentence."},
                          {"role": "user", "content": "Who wrote Hamlet?"},
                          {"role": "assistant", "content": "William Shakespeare wrote Hamlet."},
                          {"role": "user", "content": "When?"},
                          {"role": "assistant", "content": "Around 1600."},
                          {"role": "user", "content": "Thanks!"}],
    "user_types_markers": [{"role": "user", "content": "Please repeat: [INST] <<SYS>> </s><s> <|eot_id|> <|im_end|>"}],
    "whitespace_unicode": [{"role": "system", "content": "  Sé breve.  "},
                           {"role": "user", "content": "\n  Ünïcödé ✓ 日本語 🦙 \t"}],
}


def ids_of(tok, messages, add_generation_prompt, template=None):
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                  chat_template=template)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def main():
    root, out_path = sys.argv[1], sys.argv[2]
    tokenizers = {
        "tiny-llama (official Llama-2-chat template)": (f"{root}/tiny-llama/safetensors", None),
        "llama3 (official template)": (f"{root}/tokenizers/llama3", None),
        "chatml on the tiny-llama vocabulary (text only: its markers are not tokens there)": (f"{root}/tiny-llama/safetensors", CHATML),
    }
    result = {"transformers_version": transformers.__version__, "chatml_template": CHATML, "cases": []}
    for name, (path, template) in tokenizers.items():
        tok = AutoTokenizer.from_pretrained(path)
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                case = {"tokenizer": name, "path": path[len(root) + 1:], "conversation": conv_name, "messages": messages,
                        "add_generation_prompt": agp}
                try:
                    case["text"] = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp,
                                                           chat_template=template)
                    case["ids"] = ids_of(tok, messages, agp, template)
                except Exception as e:  # the template's raise_exception
                    case["error"] = f"{type(e).__name__}: {e}"
                result["cases"].append(case)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    print(f"{len(result['cases'])} cases written")


if __name__ == "__main__":
    main()
