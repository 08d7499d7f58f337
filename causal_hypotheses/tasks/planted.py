"""Synthetic tasks of the planted-circuit models (causal_hypotheses/planted.py): token sequences
with no tokenizer, each with one mechanism that solves it.

    previous_token   [bos] + r, and at every position t >= 2 the target is r's token at t - 1
                     (the output repeats the token before): one previous-token head.
    marker           [bos] + r with a marker token at a random position m and again at the end;
                     the answer (at the last position) is the token after the first marker.
                     A head must find position m + 1, which it knows only through a
                     previous-token head: two heads composed.
    modular_sum      [bos, a, b]; the answer (at the last position) is (a + b) mod p as one of
                     p result tokens: a head moves a next to b and an MLP computes the sum.

Every builder is seeded and returns a :class:`Task` whose corrupt prompts change the answer.
The same builders draw the models' training data (scripts/train_planted.py).
"""
from __future__ import annotations

import random

import torch

from ..errors import InputError
from .base import Task
from .ioi import _check_n

MARKER = 1  # the marker token of the marker task (bos is 0)


def _check_int(label: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{label}={value!r}: expected an int")
    if value < low:
        raise InputError(f"{label}={value}: expected at least {low}")
    return value


def previous_token(n: int, seq_len: int = 16, vocab_size: int = 32, seed: int = 0, bos: int = 0) -> Task:
    """``n`` sequences ``[bos] + r`` of ``seq_len`` tokens, r uniform over the non-bos tokens.

    targets (N, T): clean[t - 1] at every t >= 2 (position 1 would repeat bos), -100 at 0 and 1.
    corrupt: another such sequence, differing from clean at every position after bos.
    answer / distractor: clean[-2] / corrupt[-2], what the last position predicts (position -1).
    Feature "prev": clean[-2], for interchange interventions.
    """
    n = _check_n(n)
    seq_len = _check_int("seq_len", seq_len, 3)
    vocab_size = _check_int("vocab_size", vocab_size, 3)
    if not 0 <= bos < vocab_size:
        raise InputError(f"bos={bos}: expected a token id in [0, vocab_size={vocab_size})")
    rng = random.Random(seed)
    others = [t for t in range(vocab_size) if t != bos]
    clean, corrupt = [], []
    for _ in range(n):
        r = [rng.choice(others) for _ in range(seq_len - 1)]
        r_other = [rng.choice([t for t in others if t != x]) for x in r]
        clean.append([bos] + r)
        corrupt.append([bos] + r_other)
    clean_t, corrupt_t = torch.tensor(clean), torch.tensor(corrupt)
    targets = torch.full_like(clean_t, -100)
    targets[:, 2:] = clean_t[:, 1:-1]
    return Task(name="previous_token", clean=clean_t, corrupt=corrupt_t, answer=clean_t[:, -2].clone(),
                distractor=corrupt_t[:, -2].clone(), position=-1, targets=targets,
                features={"prev": clean_t[:, -2].clone()})


def _marker_sequence(rng: random.Random, seq_len: int, vocab_size: int, bos: int, marker: int) -> tuple[list[int], int]:
    """One marker sequence and its marker position m (the answer is the token at m + 1)."""
    pool = [t for t in range(vocab_size) if t not in (bos, marker)]
    body = rng.sample(pool, seq_len - 2)  # distinct tokens: the answer appears once
    m = rng.randrange(1, seq_len - 2)  # marker at m; m + 1 <= seq_len - 2 holds a body token
    tokens = [bos] + body[: m - 1] + [marker] + body[m - 1 : seq_len - 3] + [marker]
    return tokens, m


def marker(n: int, seq_len: int = 16, vocab_size: int = 32, seed: int = 0, bos: int = 0, marker: int = MARKER) -> Task:
    """``n`` sequences ``[bos] + ... + [marker] + [x] + ... + [marker]`` of ``seq_len`` tokens; the
    answer at the last position is x, the token after the first marker.

    The other tokens are distinct (x appears once), drawn from the tokens other than bos and
    marker; the first marker's position is uniform over 1 .. seq_len - 3.
    corrupt: another such sequence with a different answer.  answer / distractor: x and the
    corrupt x.  Features "answer" (x) and "marker" (the first marker's position).
    """
    n = _check_n(n)
    seq_len = _check_int("seq_len", seq_len, 4)
    vocab_size = _check_int("vocab_size", vocab_size, seq_len)
    if bos == marker or not (0 <= bos < vocab_size and 0 <= marker < vocab_size):
        raise InputError(f"bos={bos}, marker={marker}: expected two different token ids in [0, {vocab_size})")
    rng = random.Random(seed)
    clean, corrupt, positions = [], [], []
    for _ in range(n):
        tokens, m = _marker_sequence(rng, seq_len, vocab_size, bos, marker)
        while True:
            other, _ = _marker_sequence(rng, seq_len, vocab_size, bos, marker)
            if other[other.index(marker) + 1] != tokens[m + 1]:
                break
        clean.append(tokens)
        corrupt.append(other)
        positions.append(m)
    clean_t, corrupt_t = torch.tensor(clean), torch.tensor(corrupt)
    rows = torch.arange(n)
    m_t = torch.tensor(positions)
    answer = clean_t[rows, m_t + 1]
    distractor = corrupt_t[rows, (corrupt_t == marker).long().argmax(1) + 1]
    return Task(name="marker", clean=clean_t, corrupt=corrupt_t, answer=answer, distractor=distractor, position=-1,
                features={"answer": answer.clone(), "marker": m_t})


def modular_sum_tokens(p: int) -> tuple[list[int], list[int]]:
    """Token ids of the operands 0 .. p-1 and of the results 0 .. p-1 (token 0 is bos)."""
    return list(range(1, p + 1)), list(range(p + 1, 2 * p + 1))


def modular_sum(n: int, p: int = 11, seed: int = 0, bos: int = 0) -> Task:
    """``n`` prompts ``[bos, a, b]`` (operand tokens) whose answer at the last position is the result
    token of (a + b) mod p.  Vocabulary: bos 0, operands 1 .. p, results p + 1 .. 2p.

    (a, b) uniform over the p * p pairs; corrupt: (a', b') with a' != a, b' != b and a different
    sum.  answer / distractor: the clean and corrupt result tokens.  Features "a", "b" (the
    operand values 0 .. p-1) and "sum".
    """
    n = _check_n(n)
    p = _check_int("p", p, 3)
    if bos != 0:
        raise InputError(f"bos={bos}: the modular-sum vocabulary puts bos at 0")
    operands, results = modular_sum_tokens(p)
    rng = random.Random(seed)
    clean, corrupt, values = [], [], []
    for _ in range(n):
        a, b = rng.randrange(p), rng.randrange(p)
        while True:
            a2, b2 = rng.randrange(p), rng.randrange(p)
            if a2 != a and b2 != b and (a2 + b2) % p != (a + b) % p:
                break
        clean.append([bos, operands[a], operands[b]])
        corrupt.append([bos, operands[a2], operands[b2]])
        values.append((a, b, (a + b) % p, (a2 + b2) % p))
    v = torch.tensor(values)
    return Task(name="modular_sum", clean=torch.tensor(clean), corrupt=torch.tensor(corrupt),
                answer=v[:, 2] + p + 1, distractor=v[:, 3] + p + 1, position=-1,
                features={"a": v[:, 0], "b": v[:, 1], "sum": v[:, 2]})
