"""Induction: repeated random token sequences, the test bed for induction heads.

Olsson et al., "In-context Learning and Induction Heads" (Transformer Circuits Thread, 2022;
arXiv:2209.11895), following Elhage et al., "A Mathematical Framework for Transformer
Circuits" (2021). A sequence of random tokens r is shown twice; on the second copy a model
with induction heads predicts each next token by finding the previous occurrence of the
current token and copying the token that followed it.

    clean   = [bos] + r + r     (the second half is predictable by induction)
    corrupt = [bos] + r + r'    (r' fresh tokens, none of them in r: nothing to copy)

The 2 * half_len tokens of r and r' are all distinct (drawn without replacement from
[first_token, vocab_size), leaving out ``bos``), so every induction target is unambiguous.
No tokenizer is involved; the task is measured by loss on ``targets``.
"""
from __future__ import annotations

import random

import torch

from ..errors import InputError
from .base import Task
from .ioi import _check_n


def induction(
    n: int,
    half_len: int = 20,
    vocab_size: int = 50257,
    seed: int = 0,
    bos: int | None = None,
    first_token: int = 0,
) -> Task:
    """``n`` repeated random sequences of length [bos] + 2 * half_len.

    vocab_size: tokens are drawn from [first_token, vocab_size) (50257 = GPT-2's vocabulary;
        pass the model's ``config.vocab_size``). ``bos`` (e.g. GPT-2's 50256) is prepended when
        given and never drawn as a random token.

    targets (N, T): at each position t of the second copy except its first token (t with
    clean[t] in the second half and t + 1 < T), the next clean token; -100 elsewhere. The
    position just before the second copy is left out: its target r[0] cannot be copied from
    anywhere. answer and distractor are None. Features: "seq", an id per distinct sequence r
    (rows with equal r share an id; with random draws every row has its own), and "first", the
    token r[0]: what the last position (r's last token) predicts by induction, for
    interchange interventions.
    """
    n = _check_n(n)
    for label, value in (("half_len", half_len), ("vocab_size", vocab_size), ("first_token", first_token)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{label}={value!r}: expected an int")
    if half_len < 2:
        raise InputError(f"half_len={half_len}: need at least 2 tokens per half for any induction target")
    if bos is not None and (isinstance(bos, bool) or not isinstance(bos, int) or bos < 0):
        raise InputError(f"bos={bos!r}: expected a non-negative token id or None")
    if first_token < 0:
        raise InputError(f"first_token={first_token}: expected >= 0")
    skip_bos = bos is not None and first_token <= bos < vocab_size
    available = vocab_size - first_token - (1 if skip_bos else 0)
    if available < 2 * half_len:
        raise InputError(
            f"only {available} tokens in [first_token={first_token}, vocab_size={vocab_size})"
            f"{' without bos' if skip_bos else ''}, but r and r' need {2 * half_len} distinct tokens; "
            "lower half_len or widen the range"
        )

    rng = random.Random(seed)
    prefix = [] if bos is None else [bos]
    clean, corrupt, seq_ids = [], [], []
    seen: dict[tuple[int, ...], int] = {}
    for _ in range(n):
        drawn = [first_token + k for k in rng.sample(range(available), 2 * half_len)]
        if skip_bos:
            drawn = [t + 1 if t >= bos else t for t in drawn]
        r, r_fresh = drawn[:half_len], drawn[half_len:]
        clean.append(prefix + r + r)
        corrupt.append(prefix + r + r_fresh)
        seq_ids.append(seen.setdefault(tuple(r), len(seen)))

    clean_t = torch.tensor(clean, dtype=torch.long)
    start = len(prefix) + half_len  # first position of the second copy
    targets = torch.full_like(clean_t, -100)
    targets[:, start:-1] = clean_t[:, start + 1:]
    return Task(
        name="induction",
        clean=clean_t,
        corrupt=torch.tensor(corrupt, dtype=torch.long),
        answer=None,
        distractor=None,
        position=-1,
        targets=targets,
        features={"seq": torch.tensor(seq_ids, dtype=torch.long), "first": clean_t[:, len(prefix)]},
    )
