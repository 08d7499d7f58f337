"""Indirect Object Identification (IOI): the task of Wang et al. 2022.

Wang, Variengien, Conmy, Shlegeris and Steinhardt, "Interpretability in the Wild: a Circuit
for Indirect Object Identification in GPT-2 small" (arXiv:2211.00593).

A prompt introduces two people and then has one of them (the subject, S) give something to
the other (the indirect object, IO); the model should complete it with the IO's name:

    "When Mary and John went to the store, John gave a drink to" -> " Mary"

The prompts here are in the spirit of the paper's templates, in our own words. The two names
appear in both orders: ABBA ("When Mary and John ..., John ...", IO first) and BABA ("When
John and Mary ..., John ...", S first). The default corruption is the same prompt with the
second mention of S replaced by a third name C, so the corrupt prompt carries no information
about which name is repeated and has the same token length.
(``corruption="abc"`` replaces all three names, as the paper's pABC distribution does: then
positions before the second mention differ as well, which path patching into heads that read
them, such as previous-token heads, needs.)

Every template here tokenizes to 14 tokens with GPT-2's BPE when names, places and objects
are single tokens, so a batch mixes all templates. With another tokenizer the templates are
grouped by length and only the largest group of equal length is used (with a warning).

Sampling: each example draws its template, names, place and object independently from
``random.Random(seed)``; a repeat of an earlier example is redrawn a few times, so duplicates
only appear when ``n`` approaches the number of distinct prompts (sampling with replacement).
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Sequence

import torch

from ..errors import InputError
from .base import Task

# Placeholders: {A} and {B} are the two names of the introduction (in ABBA order A = IO,
# B = S; in BABA order A = S, B = IO), {S} the second mention of the subject.
IOI_TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "After {A} and {B} arrived at the {PLACE}, {S} handed a {OBJECT} to",
    "While {A} and {B} were at the {PLACE}, {S} passed a {OBJECT} to",
    "Then {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Today {A} and {B} worked at the {PLACE}. {S} gave a {OBJECT} to",
    "Once {A} and {B} got to the {PLACE}, {S} offered a {OBJECT} to",
    "When {A} and {B} met at the {PLACE}, {S} brought a {OBJECT} to",
    "As {A} and {B} left the {PLACE}, {S} tossed a {OBJECT} over to",
    "Since {A} and {B} were at the {PLACE}, {S} showed a {OBJECT} to",
    "Later {A} and {B} ate at the {PLACE}. {S} handed a {OBJECT} to",
    "Just before {A} and {B} left the {PLACE}, {S} gave a {OBJECT} to",
    "When {A} and {B} visited the {PLACE} together, {S} gave a {OBJECT} to",
    "Yesterday {A} and {B} were at the {PLACE}. {S} sent a {OBJECT} to",
)

IOI_NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "James", "Michael", "David", "Robert", "William", "Richard",
    "Thomas", "Daniel", "Paul", "Mark", "George", "Steven", "Kevin", "Brian", "Jason", "Ryan",
    "Jacob", "Eric", "Adam", "Peter", "Kelly", "Sarah", "Laura", "Emily", "Lisa", "Anna",
    "Rachel", "Jessica", "Jennifer", "Michelle", "Amy", "Karen", "Susan", "Linda", "Tom", "Kate",
)

IOI_PLACES: tuple[str, ...] = (
    "store", "park", "school", "hospital", "restaurant", "office", "station", "garden", "house",
    "library", "beach", "market", "museum", "church", "bank", "cafe", "airport", "hotel", "gym",
    "theater", "mall", "zoo", "farm",
)

# All start with a consonant sound, so "a {OBJECT}" reads correctly.
IOI_OBJECTS: tuple[str, ...] = (
    "drink", "ring", "book", "bottle", "snack", "necklace", "ball", "bone", "letter", "gift",
    "cake", "card", "pen", "ticket", "basketball", "flower", "hat", "sandwich", "phone", "bag",
)

ORDERS = {"abba": 0, "baba": 1}  # the "order" feature: 0 = ABBA (IO first), 1 = BABA (S first)
_PLACEHOLDERS = ("{A}", "{B}", "{S}", "{PLACE}", "{OBJECT}")


# ---------------------------------------------------------------------------------------------
# Helpers shared by the text tasks (greater_than and factual import them).

def _encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (no BOS is prepended)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n={n!r}: the number of examples must be a positive int")
    return n


def _single_tokens(tokenizer, words: Sequence[str], kind: str, prefix: str = " ") -> dict[str, int]:
    """Map each word whose ``prefix + word`` is one token to that token; warn about the rest."""
    kept: dict[str, int] = {}
    dropped = []
    for word in words:
        ids = _encode(tokenizer, prefix + word)
        if len(ids) == 1:
            kept.setdefault(word, ids[0])
        else:
            dropped.append(word)
    if dropped:
        warnings.warn(
            f"dropping {kind} that are not single tokens with {prefix!r} in front: {dropped}",
            UserWarning, stacklevel=3,
        )
    return kept


def _largest_length_group(lengths: dict, kind: str) -> int:
    """The token length shared by the most items (ties: the first item's); warn about the rest."""
    counts: dict[int, int] = {}
    for length in lengths.values():
        counts[length] = counts.get(length, 0) + 1
    first = next(iter(lengths.values()))
    best = max(counts, key=lambda length: (counts[length], length == first))
    dropped = [key for key, length in lengths.items() if length != best]
    if dropped:
        warnings.warn(
            f"{kind} {dropped} tokenize to a different length than the others ({best} tokens); "
            "they are left out so that every prompt of the batch has one length",
            UserWarning, stacklevel=3,
        )
    return best


# ---------------------------------------------------------------------------------------------

def ioi(
    tokenizer,
    n: int,
    seed: int = 0,
    template_set: str = "baba+abba",
    *,
    names: Sequence[str] | None = None,
    places: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    corruption: str = "s2",
) -> Task:
    """``n`` IOI prompts with their ABC corruptions.

    template_set: "abba", "baba" or "baba+abba" (both orders, alternating ABBA, BABA, ...).
    names, places, objects, templates: replace the built-in lists. Names, places and objects
        must be single tokens with a leading space; others are dropped with a warning, and
        fewer than 3 usable names is an InputError. Templates use the placeholders {A}, {B}
        (the introduction), {S} (second mention of the subject), {PLACE} and {OBJECT}.
    corruption: "s2" (the second mention of S replaced by a third name C) or "abc" (the
        introduction's two names and the second mention replaced by three other names, all
        different from each other and from the clean prompt's).

    Returns a Task with answer = IO token, distractor = S token, position -1, and features
    "template", "order" (0 ABBA, 1 BABA), "io_pos", "s1_pos", "s2_pos", "io", "s" and "c"
    (the third name, written at s2_pos in the corrupt prompt).
    """
    n = _check_n(n)
    if corruption not in ("s2", "abc"):
        raise InputError(
            f"IOI corruption={corruption!r} is not one of 's2' (replace the second mention of the subject) "
            "and 'abc' (replace all three names)"
        )
    orders = _parse_template_set(template_set)
    templates = tuple(IOI_TEMPLATES if templates is None else templates)
    for template in templates:
        missing = [p for p in _PLACEHOLDERS if template.count(p) != 1]
        if missing or template.startswith("{"):
            raise InputError(
                f"IOI template {template!r} must contain each of {list(_PLACEHOLDERS)} exactly once "
                f"(problem: {missing or 'starts with a placeholder'}) and must not start with a "
                "placeholder (a name at the start would have no leading space)"
            )
    name_ids = _single_tokens(tokenizer, IOI_NAMES if names is None else names, "names")
    if len(name_ids) < 3:
        bad = [w for w in (IOI_NAMES if names is None else names) if w not in name_ids]
        raise InputError(
            f"IOI needs at least 3 names that are single tokens (with a leading space) in this "
            f"tokenizer; only {sorted(name_ids)} are, and these are not: {bad}. Pass names= with "
            "common first names the tokenizer has as one token (check len(tokenizer(' ' + name)"
            "['input_ids']) == 1)"
        )
    place_ids = _single_tokens(tokenizer, IOI_PLACES if places is None else places, "places")
    object_ids = _single_tokens(tokenizer, IOI_OBJECTS if objects is None else objects, "objects")
    for kind, kept, given in (("places", place_ids, places), ("objects", object_ids, objects)):
        if not kept:
            raise InputError(
                f"none of the IOI {kind} {list(given or [])} is a single token with a leading space "
                f"in this tokenizer; pass {kind}= with single-token words"
            )
    name_list, place_list, object_list = list(name_ids), list(place_ids), list(object_ids)

    # Group templates by token length; keep the largest group.
    probe = dict(A=name_list[0], B=name_list[1], S=name_list[1], PLACE=place_list[0], OBJECT=object_list[0])
    lengths = {i: len(_encode(tokenizer, t.format(**probe))) for i, t in enumerate(templates)}
    length = _largest_length_group(lengths, "IOI templates")
    usable = [i for i in lengths if lengths[i] == length]

    rng = random.Random(seed)
    other_rng = random.Random(f"ioi-abc-{seed}")
    seen: set = set()
    rows: list[dict] = []
    for index in range(n):
        order = orders[index % len(orders)]
        for _attempt in range(20):
            template = rng.choice(usable)
            io, s, c = rng.sample(name_list, 3)
            place, obj = rng.choice(place_list), rng.choice(object_list)
            key = (template, order, io, s, place, obj)
            if key not in seen:
                break
        seen.add(key)
        # The abc corruption's other two names come from their own generator, so the clean prompts
        # (and C) are the same under both corruptions.
        others = other_rng.sample([x for x in name_list if x not in (io, s, c)], 2) if corruption == "abc" else None
        rows.append(dict(template=template, order=order, io=io, s=s, c=c, place=place, obj=obj, others=others))

    clean, corrupt, prompts = [], [], []
    feats: dict[str, list[int]] = {k: [] for k in ("template", "order", "io_pos", "s1_pos", "s2_pos", "io", "s", "c")}
    for row in rows:
        a, b = (row["io"], row["s"]) if row["order"] == 0 else (row["s"], row["io"])
        fill = dict(A=a, B=b, PLACE=row["place"], OBJECT=row["obj"])
        text = templates[row["template"]].format(S=row["s"], **fill)
        if row["others"] is None:
            bad_text = templates[row["template"]].format(S=row["c"], **fill)
        else:
            bad_text = templates[row["template"]].format(
                A=row["others"][0], B=row["others"][1], S=row["c"], PLACE=row["place"], OBJECT=row["obj"])
        ids, bad_ids = _encode(tokenizer, text), _encode(tokenizer, bad_text)
        io_id, s_id, c_id = name_ids[row["io"]], name_ids[row["s"]], name_ids[row["c"]]
        io_at = [i for i, t in enumerate(ids) if t == io_id]
        s_at = [i for i, t in enumerate(ids) if t == s_id]
        if len(ids) != length or len(io_at) != 1 or len(s_at) != 2:
            raise InputError(
                f"IOI prompt {text!r} tokenizes to {len(ids)} tokens (expected {length}) with the IO "
                f"name token at {io_at} and the subject token at {s_at} (expected one and two "
                "positions): the tokenizer merges a name, place or object with its neighbours, so "
                "prompts cannot share one length; use other names/places/objects or templates"
            )
        expected = list(ids)
        expected[s_at[1]] = c_id
        if row["others"] is not None:
            first, second = sorted((io_at[0], s_at[0]))
            expected[first], expected[second] = name_ids[row["others"][0]], name_ids[row["others"][1]]
        if bad_ids != expected:
            raise InputError(
                f"IOI corrupt prompt {bad_text!r} does not tokenize as the clean prompt {text!r} with "
                "only the replaced names changed; a replacement name merges with its neighbours"
            )
        clean.append(ids)
        corrupt.append(bad_ids)
        prompts.append(text)
        for key, value in (
            ("template", row["template"]), ("order", row["order"]), ("io_pos", io_at[0]),
            ("s1_pos", s_at[0]), ("s2_pos", s_at[1]), ("io", io_id), ("s", s_id), ("c", c_id),
        ):
            feats[key].append(value)

    return Task(
        name="ioi",
        clean=torch.tensor(clean, dtype=torch.long),
        corrupt=torch.tensor(corrupt, dtype=torch.long),
        answer=torch.tensor(feats["io"], dtype=torch.long),
        distractor=torch.tensor(feats["s"], dtype=torch.long),
        position=-1,
        features={k: torch.tensor(v, dtype=torch.long) for k, v in feats.items()},
        prompts=tuple(prompts),
        cluster="template",  # prompts of one template share more than chance: intervals resample templates
    )


def _parse_template_set(template_set: str) -> list[int]:
    parts = template_set.lower().split("+") if isinstance(template_set, str) else []
    if not parts or any(p not in ORDERS for p in parts) or len(set(parts)) != len(parts):
        raise InputError(
            f"template_set={template_set!r}: expected 'abba', 'baba' or 'baba+abba'"
        )
    return sorted(ORDERS[p] for p in parts)
