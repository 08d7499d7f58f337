"""Train the 2-layer attention-only induction model shipped in causal_hypotheses/data/induction_2l.

    python scripts/train_induction.py [--out DIR] [--steps N] [--seed S]

Deterministic: fixed seeds, one thread, ``torch.use_deterministic_algorithms(True)``; the same
arguments give bit-identical weights on the same torch build.  About 2-4 minutes on one CPU thread.

Data.  Every training sequence is ``[BOS]`` followed by uniform random non-BOS tokens which, from a
random start on, repeat with a random period (6..31 tokens, at least two copies).  Start and
period vary, so a repeat can only be found by its content: layer-0 heads cannot solve it by
attending to a fixed offset.  Evaluation uses ``[BOS] + r + r`` with ``len(r) == HALF_LEN``.

Model.  ``GPT2LMHeadModel`` from ``causal_hypotheses.trained.CONFIG`` (untied embeddings).  The
MLPs are set to exactly zero and frozen, so the model is attention-only.

Curriculum hint.  On this data the loss sits on a long plateau (bag-of-context-tokens) before
induction forms.  For the first ``--hint-steps`` steps an auxiliary term
``-hint_weight * mean(log(min(attn_a0.h0[t, t-1], hint_target)))`` nudges head a0.h0 toward the
previous position; it is zero once that attention passes ``hint_target`` and is switched off
afterwards, so the rest of training is the plain language-model loss.  What the heads end up doing
is measured at the end (and by tests/test_trained_model.py), not assumed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from causal_hypotheses import trained  # noqa: E402


def build_model(seed: int):
    """A fresh GPT-2 from trained.CONFIG with zeroed, frozen MLPs."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(**trained.CONFIG)
    config._attn_implementation = "eager"  # attention patterns are needed for the hint
    model = GPT2LMHeadModel(config)
    for block in model.transformer.h:
        for p in (*block.mlp.c_fc.parameters(), *block.mlp.c_proj.parameters()):
            with torch.no_grad():
                p.zero_()
            p.requires_grad_(False)
    return model


def batch_tokens(batch: int, length: int, min_period: int, generator: torch.Generator) -> torch.Tensor:
    """``(batch, length)``: ``[BOS]`` + random tokens that repeat, from a random start on, with a random period."""
    tokens = torch.randint(1, trained.VOCAB_SIZE, (batch, length), generator=generator)
    tokens[:, 0] = trained.BOS
    max_period = (length - 1) // 2
    period = torch.randint(min_period, max_period + 1, (batch, 1), generator=generator)
    start = 1 + (torch.rand(batch, 1, generator=generator) * (length - 2 * period)).long()
    pos = torch.arange(length).expand(batch, length)
    source = torch.where(pos >= start + period, start + (pos - start) % period, pos)
    return tokens.gather(1, source)


@torch.no_grad()
def evaluate(model, tokens: torch.Tensor) -> dict:
    """Losses on the two halves of ``[BOS] + r + r`` and per-head attention scores."""
    h = trained.HALF_LEN
    out = model(tokens, output_attentions=True)
    # logits at position i predict token i + 1
    losses = F.cross_entropy(out.logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    first = losses[:, 1:h].mean().item()  # predicting r[1:] in the first copy
    second = losses[:, h + 1:].mean().item()  # predicting r[1:] in the second copy
    positions = torch.arange(tokens.shape[1])
    second_copy = positions[h + 1:]
    scores = {}
    for layer, pattern in enumerate(out.attentions):  # (B, heads, query, key)
        for head in range(pattern.shape[1]):
            p = pattern[:, head]
            scores[f"a{layer}.h{head}"] = (
                p[:, positions[1:], positions[:-1]].mean().item(),  # attention to t-1
                p[:, positions[2:], positions[:-2]].mean().item(),  # attention to t-2
                p[:, second_copy, second_copy - h + 1].mean().item(),  # to the token after the previous occurrence
            )
    return dict(first=first, second=second, scores=scores)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=trained.DATA_DIR, help="output directory (default: the package data dir)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-period", type=int, default=6, help="shortest repeated span in training")
    parser.add_argument("--hint-steps", type=int, default=400, help="steps with the previous-token hint (0: none)")
    parser.add_argument("--hint-weight", type=float, default=0.1)
    parser.add_argument("--hint-target", type=float, default=0.8)
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    model = build_model(args.seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = min(100, max(1, args.steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(  # warm up, hold, decay linearly over the last fifth
        optimizer, lambda s: min(1.0, (s + 1) / warmup, 5.0 * (1 - s / args.steps) + 0.05)
    )
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    eval_tokens = trained.repeated_tokens(256, torch.Generator().manual_seed(args.seed + 2))
    length = trained.CONFIG["n_positions"]
    previous = torch.arange(1, length)

    start = time.perf_counter()
    for step in range(args.steps):
        tokens = batch_tokens(args.batch, length, args.min_period, data_gen)
        hint = step < args.hint_steps
        out = model(tokens, output_attentions=hint)
        logits = out.logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        if hint:
            to_previous = out.attentions[0][:, 0][:, previous, previous - 1]
            loss = loss - args.hint_weight * to_previous.clamp(1e-6, args.hint_target).log().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            model.eval()
            ev = evaluate(model, eval_tokens)
            model.train()
            print(f"step {step:5d}  train loss {loss.item():.3f}  first half {ev['first']:.3f}  "
                  f"second half {ev['second']:.3f}  ({time.perf_counter() - start:.0f}s)", flush=True)
    elapsed = time.perf_counter() - start

    model.eval()
    ev = evaluate(model, eval_tokens)
    print(f"trained {args.steps} steps in {elapsed:.1f}s; first half {ev['first']:.4f}, second half {ev['second']:.4f}")
    print("head      to t-1   to t-2   induction")
    for name, (prev1, prev2, induction) in ev["scores"].items():
        print(f"{name:8s}  {prev1:6.3f}   {prev2:6.3f}   {induction:9.3f}")

    for block in model.transformer.h:  # the MLPs must still be exactly zero
        for p in (*block.mlp.c_fc.parameters(), *block.mlp.c_proj.parameters()):
            assert torch.count_nonzero(p).item() == 0
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)
    extra = os.path.join(args.out, "generation_config.json")  # not needed: the package ships two files
    if os.path.exists(extra):
        os.remove(extra)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
