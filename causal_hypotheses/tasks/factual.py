"""Factual recall: one-token facts about countries and cities, with subject-swap corruptions.

The setting of Meng, Bau, Andonian and Belinkov, "Locating and Editing Factual Associations
in GPT" (ROME, NeurIPS 2022, arXiv:2202.05262), reduced to single-token subjects and objects
so that clean and corrupt prompts share one token length:

    clean   "The capital city of France is" -> " Paris"   (answer)
    corrupt "The capital city of Italy is"  -> " Rome"    (distractor)

The corrupt prompt uses another subject of the same relation whose object differs, so only
the subject token differs and the logit difference answer - distractor measures how much the
clean subject's fact is recalled. The table is hand-written; every relation template has 6
tokens with GPT-2's BPE. With another tokenizer, triples whose subject or object is not one
token are dropped with a warning, and relations whose template has another length than the
most common one are left out (with a warning).

Sampling: the distinct clean prompts are the triples; with ``n`` at most their number the
examples are drawn without replacement, otherwise whole shuffled passes over all triples are
concatenated (sampling with replacement). The corrupt subject is drawn at random per example.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Sequence

import torch

from ..errors import InputError
from .base import Task
from .greater_than import _draw
from .ioi import _check_n, _encode, _largest_length_group

_CAPITAL = "The capital city of {} is"
_LANGUAGE = "The official language of {} is"
_CONTINENT = "The country of {} is in"
_CITY = "The city of {} is in"


def _rows(template: str, pairs: str) -> list[tuple[str, str, str]]:
    return [(template, *pair.split(":")) for pair in pairs.split()]


# (relation template, subject, object); subject and object are one GPT-2 token with a space.
FACTS: tuple[tuple[str, str, str], ...] = tuple(
    _rows(_CAPITAL, "France:Paris Italy:Rome Germany:Berlin Spain:Madrid Japan:Tokyo China:Beijing "
          "Russia:Moscow Egypt:Cairo Canada:Ottawa Greece:Athens Poland:Warsaw Ireland:Dublin "
          "Sweden:Stockholm Norway:Oslo Peru:Lima Cuba:Havana Iran:Tehran Iraq:Baghdad Turkey:Ankara "
          "Austria:Vienna Hungary:Budapest Portugal:Lisbon Denmark:Copenhagen Finland:Helsinki "
          "Thailand:Bangkok Syria:Damascus Lebanon:Beirut Australia:Canberra England:London "
          "Scotland:Edinburgh Belgium:Brussels Chile:Santiago Korea:Seoul Afghanistan:Kabul")
    + _rows(_LANGUAGE, "France:French Germany:German Italy:Italian Spain:Spanish Japan:Japanese "
            "China:Chinese Russia:Russian Greece:Greek Poland:Polish Sweden:Swedish Brazil:Portuguese "
            "Turkey:Turkish Egypt:Arabic Finland:Finnish Norway:Norwegian Korea:Korean Iran:Persian "
            "Israel:Hebrew Netherlands:Dutch Denmark:Danish Hungary:Hungarian Vietnam:Vietnamese "
            "Thailand:Thai Ukraine:Ukrainian Romania:Romanian")
    + _rows(_CONTINENT, "France:Europe Germany:Europe Italy:Europe Spain:Europe Poland:Europe "
            "Sweden:Europe Greece:Europe Austria:Europe Japan:Asia China:Asia India:Asia Vietnam:Asia "
            "Thailand:Asia Pakistan:Asia Indonesia:Asia Egypt:Africa Kenya:Africa Nigeria:Africa "
            "Ethiopia:Africa Ghana:Africa Morocco:Africa Uganda:Africa Sudan:Africa")
    + _rows(_CITY, "Paris:France Lyon:France Berlin:Germany Munich:Germany Hamburg:Germany Rome:Italy "
            "Milan:Italy Naples:Italy Venice:Italy Madrid:Spain Barcelona:Spain Tokyo:Japan Osaka:Japan "
            "Kyoto:Japan Beijing:China Shanghai:China Moscow:Russia Toronto:Canada Montreal:Canada "
            "Vancouver:Canada Sydney:Australia Melbourne:Australia Mumbai:India Cairo:Egypt "
            "London:England Manchester:England Dublin:Ireland Athens:Greece Istanbul:Turkey "
            "Vienna:Austria Amsterdam:Netherlands Stockholm:Sweden Warsaw:Poland Lisbon:Portugal "
            "Seoul:Korea Bangkok:Thailand Havana:Cuba Glasgow:Scotland")
)


def factual(
    tokenizer,
    n: int,
    seed: int = 0,
    *,
    facts: Sequence[tuple[str, str, str]] | None = None,
) -> Task:
    """``n`` factual-recall prompts, each corrupted by another subject of the same relation.

    facts: replace the built-in table with (template with one "{}", subject, object) triples.
        Relation ids number the distinct templates in order of first appearance.

    Returns a Task with answer = the clean object's token, distractor = the corrupt subject's
    object token, position -1, and features "relation", "subject" and "object" (token ids of
    the clean subject and object) and "subject_pos".
    """
    n = _check_n(n)
    table = list(FACTS if facts is None else facts)
    for row in table:
        if len(row) != 3 or not isinstance(row[0], str) or row[0].count("{}") != 1 or row[0].startswith("{}"):
            raise InputError(
                f"fact {row!r}: expected (template with exactly one '{{}}' not at the start, subject, object)"
            )
    relations: list[str] = []
    for template, _, _ in table:
        if template not in relations:
            relations.append(template)

    kept, dropped = [], []
    for template, subject, obj in table:
        s_ids, o_ids = _encode(tokenizer, " " + subject), _encode(tokenizer, " " + obj)
        if len(s_ids) == 1 and len(o_ids) == 1:
            kept.append((relations.index(template), subject, obj, s_ids[0], o_ids[0]))
        else:
            dropped.append((subject, obj))
    if dropped:
        warnings.warn(
            f"dropping facts whose subject or object is not a single token with a leading space: {dropped}",
            UserWarning, stacklevel=2,
        )

    # Keep relations that have two objects to contrast and share the most common length.
    usable: dict[int, int] = {}
    for rel in range(len(relations)):
        rows = [k for k in kept if k[0] == rel]
        if len({k[2] for k in rows}) >= 2:
            usable[rel] = len(_encode(tokenizer, relations[rel].format(rows[0][1])))
    if not usable:
        raise InputError(
            "no relation has two single-token facts with different objects, so no corruption can be "
            f"built (dropped as multi-token: {dropped}); pass facts= with single-token subjects and objects"
        )
    length = _largest_length_group({relations[r]: l for r, l in usable.items()}, "factual relations")
    rows = [k for k in kept if usable.get(k[0]) == length]

    rng = random.Random(seed)
    chosen = _draw(rng, rows, n)
    clean, corrupt, prompts = [], [], []
    feats: dict[str, list[int]] = {"relation": [], "subject": [], "object": [], "subject_pos": []}
    distractor = []
    for rel, subject, obj, s_id, o_id in chosen:
        others = [k for k in rows if k[0] == rel and k[2] != obj]
        _, other_subject, _, other_s_id, other_o_id = rng.choice(others)
        text = relations[rel].format(subject)
        ids = _encode(tokenizer, text)
        bad_ids = _encode(tokenizer, relations[rel].format(other_subject))
        at = [i for i, t in enumerate(ids) if t == s_id]
        expected = list(ids)
        if len(at) == 1:
            expected[at[0]] = other_s_id
        if len(ids) != length or len(at) != 1 or bad_ids != expected:
            raise InputError(
                f"factual prompt {text!r} (corrupt subject {other_subject!r}) does not tokenize to "
                f"{length} tokens with the subject as one token in place; the subject merges with "
                "its neighbours in this tokenizer, so drop this fact"
            )
        clean.append(ids)
        corrupt.append(bad_ids)
        prompts.append(text)
        distractor.append(other_o_id)
        for key, value in (("relation", rel), ("subject", s_id), ("object", o_id), ("subject_pos", at[0])):
            feats[key].append(value)

    return Task(
        name="factual",
        clean=torch.tensor(clean, dtype=torch.long),
        corrupt=torch.tensor(corrupt, dtype=torch.long),
        answer=torch.tensor(feats["object"], dtype=torch.long),
        distractor=torch.tensor(distractor, dtype=torch.long),
        position=-1,
        features={k: torch.tensor(v, dtype=torch.long) for k, v in feats.items()},
        prompts=tuple(prompts),
    )
