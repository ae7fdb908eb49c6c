"""A tiny offline causal LM for tests and demos of the knowledge stage.

`build_tiny_causal_lm` saves a randomly initialised 2-layer Llama with the packaged MiniLM
WordPiece tokenizer (no download), usable as ``--llm hf:DIR`` in seconds.
"""
import os


def build_tiny_causal_lm(path: str, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> str:
    """Save a tiny random Llama causal LM + tokenizer to `path`; returns `path`."""
    from llm4msr_tf.knowledge.encoders import minilm_dir, set_offline

    set_offline()
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
        # [UNK] as EOS: a random tied-embedding model tends to repeat the last token ([SEP]), and
        # generation tests need it to produce some tokens before stopping.
        bos_token_id=tok.cls_token_id, eos_token_id=tok.unk_token_id, tie_word_embeddings=True,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
