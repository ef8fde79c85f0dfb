"""The real model shapes the benchmarks build with random weights (which cost the same time as trained ones)."""

from transformers import Gemma3TextConfig, LlamaConfig, PreTrainedTokenizerBase, Qwen2Config


def _special_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    return dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )


def gemma3_270m_config(tokenizer: PreTrainedTokenizerBase) -> Gemma3TextConfig:
    """Gemma 3 270M: 18 layers, hidden size 640, vocabulary 262,144, tied embeddings."""
    return Gemma3TextConfig(
        vocab_size=262144,
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        sliding_window=512,
        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
        max_position_embeddings=32768,
        query_pre_attn_scalar=256,
        tie_word_embeddings=True,
        **_special_tokens(tokenizer),
    )


def qwen2_05b_config(tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    """Qwen2 0.5B: 24 layers, hidden size 896, vocabulary 151,936, tied embeddings."""
    return Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        **_special_tokens(tokenizer),
    )


def llama32_3b_config(tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """
    Llama 3.2 3B: 28 layers, hidden size 3072, vocabulary 128,256, tied embeddings; its head is 12 % of a step, close
    to the paper's Llama-3-8B (7 %). RoPE settings are left at their defaults: they change no cost.
    """
    return LlamaConfig(
        vocab_size=128256,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        tie_word_embeddings=True,
        **_special_tokens(tokenizer),
    )


SHAPES = {"gemma3-270m": gemma3_270m_config, "qwen2-0.5b": qwen2_05b_config, "llama3.2-3b": llama32_3b_config}
