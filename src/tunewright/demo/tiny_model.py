"""Build the embedded tiny base model: a BPE tokenizer with a chat template and a small Llama.

No pretrained LLM can be downloaded at run time, so the quickstart and the tests make
their own: a byte-level BPE tokenizer trained with `tokenizers` on the domain text (with
real special tokens and a ChatML template), and a Llama-architecture `transformers` model
of about a million parameters, pre-trained for a short while on the domain handbook so it
is a base model that knows the vocabulary but not the assistant's answer format. The
result is an ordinary Hugging Face model directory, loaded through `from_pretrained`.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tunewright.core.modeling import quiet_transformers
from tunewright.core.progress import progress_bar
from tunewright.train.loop import make_scheduler

quiet_transformers()

PAD, EOT, IM_START, IM_END = "<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(
    texts: list[str],
    vocab_size: int = 1024,
    special: tuple[str, ...] = (PAD, EOT, IM_START, IM_END),
    eos: str = IM_END,
    pad: str = PAD,
    bos: str | None = None,
    template: str = CHAT_TEMPLATE,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it with a chat template (by default the tiny
    model's ChatML; tests build other models' shapes with their own special tokens and template)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=pad,
        eos_token=eos,
        bos_token=bos,
        unk_token=None,
        additional_special_tokens=[t for t in special if t not in (eos, pad, bos)],
        chat_template=template,
        model_max_length=512,
        padding_side="left",
    )


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **sizes: int | bool) -> LlamaForCausalLM:
    """A small randomly initialised Llama sized for fast CPU training; `sizes` override LlamaConfig fields."""
    torch.manual_seed(seed)
    shape: dict[str, int | bool] = {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        **sizes,
    }
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **shape,
    )
    return LlamaForCausalLM(config)


def pretrain(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    documents: list[str],
    steps: int = 300,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    label: str = "pre-training the tiny base model",
) -> list[float]:
    """Next-token pre-training on documents packed into fixed windows; returns the losses."""
    eot = tokenizer.convert_tokens_to_ids(EOT)
    stream: list[int] = []
    for doc in documents:
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"] + [eot])
    windows = [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len, seq_len // 2)]
    rng = random.Random(seed)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = make_scheduler(optim, "cosine", max(1, steps // 10), steps)
    losses = []
    model.train()
    with progress_bar(label, total=steps) as advance:
        for _ in range(steps):
            batch = torch.tensor(rng.sample(windows, min(batch_size, len(windows))))
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            losses.append(loss.item())
            advance(1)
    model.eval()
    return losses


def warm_embeddings(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, documents: list[str], steps: int, seed: int = 0
) -> list[float]:
    """Train only the (tied) token embeddings on `documents`, the rest of the model frozen; returns the losses.

    Gives every token of `documents` a trained vector without teaching the transformer anything about their
    order: pre-training the whole model on word-shuffled text instead teaches it to ignore its context."""
    frozen = [p for name, p in model.named_parameters() if "embed_tokens" not in name and p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    try:
        return pretrain(model, tokenizer, documents, steps=steps, seed=seed, label="training the token embeddings")
    finally:
        for param in frozen:
            param.requires_grad_(True)


def save_base(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """Save model, tokenizer (with chat template) and a greedy generation config."""
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(EOT)],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=64,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(  # the hub's model-card front matter: where the license policy reads it
        "---\nlicense: apache-2.0\n---\n\n# tiny support base\n\nA 4-layer Llama pre-trained by tunewright on the "
        "embedded handbook (CC-BY-4.0), for the quickstart and the tests.\n",
        encoding="utf-8",
    )
