"""Train one of the planted-circuit models shipped in causal_hypotheses/data (causal_hypotheses/planted.py).

    python scripts/train_planted.py NAME [--out DIR] [--steps N] [--seed S]

NAME is prev-token-1l, marker-2l or modsum-1l.  Deterministic: fixed seeds, one thread,
``torch.use_deterministic_algorithms(True)``; the same arguments give bit-identical weights on the
same torch build (checked: a rerun with the defaults reproduced the shipped files).  CPU time on one
thread: about 20 s (prev-token-1l, modsum-1l) to 40 s (marker-2l); wall time several times more on a loaded machine.

Data: the task builders of causal_hypotheses/tasks/planted.py, one fresh seeded batch per step
(modsum-1l: all p * p pairs every step).  Loss: cross-entropy on the task's targets plus a price
on each head's share of its layer's attention output, ``--lasso * sum over layers and heads h of
(1 + h) * share(h)`` with ``share(h) = mean ||z_h W_O[h]|| / sum over the layer's heads of the
same``: where several heads could do one job, the cheapest, the lowest-numbered, ends up doing it
alone.  (A price on the weights ``||W_O[h]||`` does not work in front of a LayerNorm: every head
shrinks together and the LayerNorm undoes it; with one price for all heads the penalty does not
care how aligned heads split the work; in trial runs two to four heads shared each job.)  The
price grows from 0 over the first ``--lasso-ramp`` of the steps, so the task is learnt first.
Which heads do the work is checked after training, not assumed: in marker-2l and modsum-1l a
second, weaker head still shares the mover's job.  The attention-only models keep
their MLPs at exactly zero (frozen).

After training the mechanism is checked on the unmodified HF model, independently of the engine:
per head, attention to the position the mechanism names, and the loss when the head's output is
zeroed by a forward pre-hook on ``c_proj`` (and, for modsum-1l, when the MLP's output is zeroed).
tests/test_planted.py checks the same on the shipped weights.
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

from causal_hypotheses import planted  # noqa: E402
from causal_hypotheses.tasks import planted as tasks  # noqa: E402

DEFAULTS = {  # steps, batch, learning rate, lasso, lasso ramp (fraction of the steps)
    "prev-token-1l": (1500, 64, 3e-3, 0.03, 0.3),
    "marker-2l": (2000, 64, 2e-3, 0.03, 0.3),
    "modsum-1l": (2000, 121, 3e-3, 3.0, 0.3),
}


def data(name: str, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, targets) for one training or evaluation batch; targets -100 where nothing is predicted."""
    options = planted.spec(name).task_options
    if name == "prev-token-1l":
        task = tasks.previous_token(batch, seed=seed, **options)
        return task.clean, task.targets
    if name == "marker-2l":
        task = tasks.marker(batch, seed=seed, **options)
    else:
        p = options["p"]
        operands, results = tasks.modular_sum_tokens(p)
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        a, b = a.flatten(), b.flatten()
        tokens = torch.stack([torch.zeros_like(a), a + operands[0], b + operands[0]], 1)
        targets = torch.full_like(tokens, -100)
        targets[:, -1] = (a + b) % p + results[0]
        return tokens, targets
    targets = torch.full_like(task.clean, -100)
    targets[:, -1] = task.answer
    return task.clean, targets


def build_model(name: str, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(**planted.spec(name).config)
    config._attn_implementation = "eager"
    model = GPT2LMHeadModel(config)
    if planted.spec(name).attention_only:
        for p in planted.mlp_parameters(model):
            with torch.no_grad():
                p.zero_()
            p.requires_grad_(False)
    return model


PRICE = torch.arange(1, 17, dtype=torch.float32)  # the price of head h's share is PRICE[h] = 1 + h


def capture_head_outputs(model) -> tuple[dict, list]:
    """Pre-hooks on every c_proj that store ``||z_h W_O[h]||`` averaged over batch and positions,
    (heads,) per layer, into the returned dict on each forward pass; and the hook handles."""
    norms, handles = {}, []
    for layer, block in enumerate(model.transformer.h):
        attn = block.attn

        def store(_, args, layer=layer, attn=attn):
            z = args[0].view(*args[0].shape[:2], attn.num_heads, attn.head_dim)
            w = attn.c_proj.weight.view(attn.num_heads, attn.head_dim, -1)
            norms[layer] = torch.einsum("bthd,hde->bthe", z, w).norm(dim=-1).mean((0, 1))

        handles.append(attn.c_proj.register_forward_pre_hook(store))
    return norms, handles


def share_price(norms: dict) -> torch.Tensor:
    """Sum over layers of sum_h PRICE[h] * share(h), share(h) = the head's part of its layer's output."""
    total = 0.0
    for layer_norms in norms.values():
        share = layer_norms / layer_norms.sum().clamp(min=1e-8)
        total = total + (share * PRICE[: len(share)]).sum()
    return total


def head_norms(model) -> torch.Tensor:
    """(layers, heads): ||W_O[head]||, the rows of c_proj that head's output multiplies."""
    rows = []
    for block in model.transformer.h:
        attn = block.attn
        w = attn.c_proj.weight.view(attn.num_heads, attn.head_dim, -1)
        rows.append(w.flatten(1).norm(dim=1))
    return torch.stack(rows)


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)


@torch.no_grad()
def ablated_loss(model, tokens, targets, heads=(), mlp_layers=()) -> float:
    """Loss with the given heads' outputs (``(layer, head)``) and MLP outputs set to zero by hooks."""
    handles = []
    for layer, head in heads:
        attn = model.transformer.h[layer].attn

        def zero_head(_, args, attn=attn, head=head):
            z = args[0].view(*args[0].shape[:2], attn.num_heads, attn.head_dim).clone()
            z[:, :, head] = 0
            return (z.view(*args[0].shape),)

        handles.append(attn.c_proj.register_forward_pre_hook(zero_head))
    for layer in mlp_layers:
        handles.append(model.transformer.h[layer].mlp.register_forward_hook(lambda _, __, out: torch.zeros_like(out)))
    try:
        return loss_of(model(tokens).logits, targets).item()
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def accuracy(model, tokens, targets) -> float:
    logits = model(tokens).logits
    counted = targets != -100
    return (logits.argmax(-1)[counted] == targets[counted]).float().mean().item()


@torch.no_grad()
def attention_scores(name: str, model, tokens) -> dict[str, float]:
    """Per head, the attention mass the mechanism looks for: to t - 1 (previous-token heads), or
    from the last position to the token after the first marker (marker-2l layer 1) / to a
    (modsum-1l)."""
    out = model(tokens, output_attentions=True)
    positions = torch.arange(1, tokens.shape[1])
    scores = {}
    for layer, pattern in enumerate(out.attentions):  # (B, heads, query, key)
        for head in range(pattern.shape[1]):
            p = pattern[:, head]
            if name == "marker-2l" and layer == 1:
                after = (tokens == tasks.MARKER).long().argmax(1) + 1
                value = p[torch.arange(len(tokens)), -1, after].mean()
            elif name == "modsum-1l":
                value = p[:, -1, 1].mean()
            else:
                value = p[:, positions, positions - 1].mean()
            scores[f"a{layer}.h{head}"] = value.item()
    return scores


def report(name: str, model, seed: int) -> None:
    tokens, targets = data(name, 512, seed + 2)
    clean = ablated_loss(model, tokens, targets)
    print(f"accuracy {accuracy(model, tokens, targets):.4f}, loss {clean:.4f}")
    scores = attention_scores(name, model, tokens)
    norms = head_norms(model)
    print("head    attention  ||W_O||  loss with the head zeroed")
    n_head = model.config.n_head
    for layer in range(model.config.n_layer):
        for head in range(n_head):
            label = f"a{layer}.h{head}"
            print(f"{label:6s}  {scores[label]:9.3f}  {norms[layer, head]:7.3f}  "
                  f"{ablated_loss(model, tokens, targets, heads=[(layer, head)]):.4f}")
    if not planted.spec(name).attention_only:
        print(f"loss with the MLP zeroed {ablated_loss(model, tokens, targets, mlp_layers=[0]):.4f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(DEFAULTS))
    parser.add_argument("--out", default=None, help="output directory (default: the package data dir)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lasso", type=float, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lasso-ramp", type=float, default=None,
                        help="the penalty grows linearly from 0 over this fraction of the steps")
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    steps, batch, lr, lasso, ramp = DEFAULTS[args.name]
    ramp = ramp if args.lasso_ramp is None else args.lasso_ramp
    steps = steps if args.steps is None else args.steps
    lr = lr if args.lr is None else args.lr
    lasso = lasso if args.lasso is None else args.lasso
    out_dir = planted.spec(args.name).path if args.out is None else args.out

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    model = build_model(args.name, args.seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = min(100, max(1, steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup, 5.0 * (1 - s / steps) + 0.05))
    data_seeds = torch.Generator().manual_seed(args.seed + 1)
    norms, handles = capture_head_outputs(model)
    start, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        tokens, targets = data(args.name, batch, int(torch.randint(0, 2**31 - 1, (1,), generator=data_seeds)))
        task_loss = loss_of(model(tokens).logits, targets)
        weight = lasso * min(1.0, step / (ramp * steps)) if ramp > 0 else lasso
        loss = task_loss + weight * share_price(norms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % args.log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  task loss {task_loss.item():.4f}  ({time.perf_counter() - start:.0f}s)", flush=True)
    print(f"trained {steps} steps in {time.perf_counter() - start:.1f}s ({time.process_time() - cpu:.1f}s of CPU time)")
    for handle in handles:
        handle.remove()
    model.eval()
    report(args.name, model, args.seed)
    if planted.spec(args.name).attention_only:
        assert all(torch.count_nonzero(p).item() == 0 for p in planted.mlp_parameters(model))
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    extra = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(extra):
        os.remove(extra)
    print(f"wrote {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
