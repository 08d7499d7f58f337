"""Greater-than: the year-comparison task of Hanna et al. 2023.

Hanna, Liu and Variengien, "How does GPT-2 compute greater-than?: Interpreting mathematical
abilities in a pre-trained language model" (NeurIPS 2023, arXiv:2305.00586).

    "The war lasted from the year 1732 to the year 17" -> a two-digit token greater than "32"

GPT-2's BPE splits "1732" into "17" + "32", so the start year's last two digits (YY) are one
token and the answer is one two-digit token. The corruption is the paper's "01" baseline: YY
replaced by "01", which makes every two-digit continuation (except "00"/"01") a valid end year,
so it carries no information about YY. Only the YY token differs between clean and corrupt.

answer = the token of YY+1 (the smallest valid end year), distractor = the token of YY-1
(a year that would be wrong), so the logit difference is a single-token proxy; for the
paper's probability difference (sum of p(year > YY) minus sum of p(year <= YY)) use
``greater_than_year_tokens`` and the "yy" feature.

Sampling: the distinct prompts are (noun, YY) pairs; with ``n`` at most their number the
examples are drawn without replacement, otherwise whole shuffled passes over all pairs are
concatenated (sampling with replacement, each pair used equally often up to one).
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from ..errors import InputError
from .base import Task
from .ioi import _check_n, _encode, _single_tokens

# Events that last a span of years; each is one GPT-2 token with a leading space.
GREATER_THAN_NOUNS: tuple[str, ...] = (
    "war", "deal", "expedition", "dynasty", "siege", "journey", "drought", "famine", "occupation",
    "conflict", "reign", "rebellion", "strike", "voyage", "trial", "campaign", "treaty", "project",
    "crisis", "partnership", "alliance", "festival", "embargo", "plague", "epidemic", "revolution",
    "program", "blockade", "contract", "marriage", "friendship", "empire", "monarchy", "feud",
    "truce", "regime",
)

GREATER_THAN_TEMPLATE = "The {noun} lasted from the year {century}{yy} to the year {century}"


def greater_than_year_tokens(tokenizer) -> torch.Tensor:
    """LongTensor (100,): the token id of "00", "01", ..., "99" (no leading space).

    These are the tokens that follow "17" in "...to the year 17". Raises InputError when a
    two-digit string is not one token in this tokenizer.
    """
    ids = []
    bad = []
    for year in range(100):
        tokens = _encode(tokenizer, f"{year:02d}")
        if len(tokens) != 1:
            bad.append(f"{year:02d}")
        else:
            ids.append(tokens[0])
    if bad:
        raise InputError(
            f"the two-digit strings {bad} are not single tokens in this tokenizer; the greater-than "
            "task needs a tokenizer (like GPT-2's) in which every two-digit number is one token"
        )
    return torch.tensor(ids, dtype=torch.long)


def greater_than(
    tokenizer,
    n: int,
    seed: int = 0,
    *,
    nouns: Sequence[str] | None = None,
    century: int = 17,
) -> Task:
    """``n`` greater-than prompts with YY in 02..98 and the "01" corruption.

    nouns: replace the built-in event nouns (non-single-token ones are dropped with a warning).
    century: the two leading digits of both years (17 in the paper's main experiments).

    Years whose prompt does not tokenize as "<century>" + "YY" (GPT-2 has e.g. " 1700" and
    " 1800" as single tokens) are left out. Returns a Task with answer = token of YY+1,
    distractor = token of YY-1, position -1, features "yy" (the year, an int) and "noun"
    (index into the noun list), and "yy_pos" (the position of the YY token).
    """
    n = _check_n(n)
    if isinstance(century, bool) or not isinstance(century, int) or not 10 <= century <= 99:
        raise InputError(f"century={century!r}: expected an int in 10..99 (e.g. 17)")
    year_tokens = greater_than_year_tokens(tokenizer).tolist()
    given = list(GREATER_THAN_NOUNS if nouns is None else nouns)
    noun_ids = _single_tokens(tokenizer, given, "greater-than nouns")
    if not noun_ids:
        raise InputError(
            f"none of the nouns {given} is a single token with a leading space in this tokenizer; "
            "pass nouns= with single-token event nouns (war, deal, expedition, ...)"
        )
    noun_list = list(noun_ids)

    def render(noun: str, yy: int) -> str:
        return GREATER_THAN_TEMPLATE.format(noun=noun, century=century, yy=f"{yy:02d}")

    # The prompt length and the YY position, from the corrupt (01) prompt of the first noun.
    base = _encode(tokenizer, render(noun_list[0], 1))
    length = len(base)
    at01 = [i for i, t in enumerate(base) if t == year_tokens[1]]
    if len(at01) != 1:
        raise InputError(
            f"the corrupt prompt {render(noun_list[0], 1)!r} does not tokenize with '01' as one token "
            f"after '{century}'; this tokenizer cannot express the greater-than task"
        )
    yy_pos = at01[0]

    def tokens_ok(noun: str, yy: int) -> list[int] | None:
        ids = _encode(tokenizer, render(noun, yy))
        return ids if len(ids) == length and ids[yy_pos] == year_tokens[yy] else None

    years = [yy for yy in range(2, 99) if tokens_ok(noun_list[0], yy) is not None]
    if not years:
        raise InputError(f"no year {century}02..{century}98 tokenizes as '{century}' + 'YY' in this tokenizer")

    pairs = [(noun_index, yy) for noun_index in range(len(noun_list)) for yy in years]
    rng = random.Random(seed)
    chosen = _draw(rng, pairs, n)

    clean, corrupt, prompts, feats = [], [], [], {"yy": [], "noun": [], "yy_pos": []}
    for noun_index, yy in chosen:
        noun = noun_list[noun_index]
        ids = tokens_ok(noun, yy)
        bad_ids = _encode(tokenizer, render(noun, 1))
        expected = None if ids is None else ids[:yy_pos] + [year_tokens[1]] + ids[yy_pos + 1:]
        if ids is None or bad_ids != expected:
            raise InputError(
                f"greater-than prompt {render(noun, yy)!r} (or its 01 corruption) does not have "
                f"{length} tokens with the two-digit year at position {yy_pos}; the noun {noun!r} "
                "merges with its neighbours in this tokenizer"
            )
        clean.append(ids)
        corrupt.append(bad_ids)
        prompts.append(render(noun, yy))
        feats["yy"].append(yy)
        feats["noun"].append(noun_index)
        feats["yy_pos"].append(yy_pos)

    yy_t = torch.tensor(feats["yy"], dtype=torch.long)
    table = torch.tensor(year_tokens, dtype=torch.long)
    return Task(
        name="greater_than",
        clean=torch.tensor(clean, dtype=torch.long),
        corrupt=torch.tensor(corrupt, dtype=torch.long),
        answer=table[yy_t + 1],
        distractor=table[yy_t - 1],
        position=-1,
        features={k: torch.tensor(v, dtype=torch.long) for k, v in feats.items()},
        prompts=tuple(prompts),
    )


def _draw(rng: random.Random, items: list, n: int) -> list:
    """``n`` items: without replacement when n <= len(items), else concatenated shuffled passes."""
    out: list = []
    while len(out) < n:
        batch = list(items)
        rng.shuffle(batch)
        out.extend(batch[: n - len(out)])
    return out
