"""Tiny random models built from a config in code, for tests and for ``demo --tiny``.

No network and no shipped weights: a byte-level BPE tokenizer is trained on a small
built-in corpus, and the model is a 2-layer, hidden-size-64 network with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

CORPUS = [
    "Write a short poem about the sea.",
    "Explain how a rainbow forms in simple words.",
    "Give me three tips for sleeping better.",
    "What is a good way to learn a new language?",
    "The weather is lovely today and I feel happy.",
    "This is terrible, awful and sad news.",
    "I love this wonderful, great and excellent idea!",
    "Thank you so much, that was very helpful and kind.",
    "Sorry, I cannot help with that request.",
    "Once upon a time there was a small robot who wanted to paint.",
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _train_bpe(vocab_size: int) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return tok


def build_tiny_causal_lm(path: str | Path, *, vocab_size: int = 512, seed: int = 0) -> Path:
    """Save a random 2-layer Llama (hidden 64) with a chat-template tokenizer to ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(vocab_size),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_encoder(path: str | Path, *, seed: int = 0) -> Path:
    """Save a random 2-layer BERT (hidden 64) with a WordPiece tokenizer to ``path``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    # The vocabulary is built directly (every corpus word, every character alone and as a
    # continuation) rather than trained: WordPiece training breaks ties differently from run to run.
    words = sorted({w for line in CORPUS for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(line))})
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    # "¶" as in MiniLM's vocabulary: the symbol the reward model's inputs write for a line break
    tokens = [*specials, *chars, *(f"##{c}" for c in chars), *words, "¶"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = BertTokenizerFast(tokenizer_object=tok, model_max_length=128)
    tokenizer.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(sorted(tok.get_vocab(), key=tok.get_vocab().get)), encoding="utf-8")
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    return path
