"""The shape every task dataset has: clean and corrupt prompts of one length, with answers."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import InputError


@dataclass(frozen=True)
class Task:
    """A dataset of N examples for one behaviour.

    clean, corrupt: LongTensor (N, T), one token length for every example.
    answer, distractor: LongTensor (N,): the correct next token at ``position`` and the
        competing one (logit difference = logit[answer] - logit[distractor]); None for
        tasks measured by loss only.
    position: the prediction position (an index into T; -1 for the last).
    targets: LongTensor (N, T) of next-token targets for loss metrics (-100 = ignored);
        None means "answer at position".
    features: per-example integer features, each a LongTensor (N,), that an
        interpretation may ask examples to agree on (causal scrubbing), e.g. the IOI
        template id or the position of the indirect object.
    """

    name: str
    clean: torch.Tensor
    corrupt: torch.Tensor
    answer: torch.Tensor | None = None
    distractor: torch.Tensor | None = None
    position: int = -1
    targets: torch.Tensor | None = None
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    prompts: tuple[str, ...] = ()  # the clean prompts as text, when the task has text
    cluster: str | None = None  # a feature whose equal values make examples dependent (IOI: "template")

    def __post_init__(self) -> None:
        if self.clean.shape != self.corrupt.shape or self.clean.dim() != 2:
            raise InputError(
                f"task {self.name!r}: clean {tuple(self.clean.shape)} and corrupt {tuple(self.corrupt.shape)} "
                "must both be (N, T) with one token length"
            )
        n = self.clean.shape[0]
        for label, tensor in (("answer", self.answer), ("distractor", self.distractor)):
            if tensor is not None and tuple(tensor.shape) != (n,):
                raise InputError(f"task {self.name!r}: {label} has shape {tuple(tensor.shape)}, expected ({n},)")
        if self.cluster is not None and self.cluster not in self.features:
            raise InputError(f"task {self.name!r}: cluster={self.cluster!r} is not one of its features {sorted(self.features)}")
        for label, tensor in self.features.items():
            if tuple(tensor.shape) != (n,):
                raise InputError(f"task {self.name!r}: feature {label!r} has shape {tuple(tensor.shape)}, expected ({n},)")

    def __len__(self) -> int:
        return self.clean.shape[0]

    def subset(self, index: torch.Tensor | slice) -> "Task":
        """The same task restricted to some examples (a LongTensor of indices or a slice)."""
        pick = (lambda t: None if t is None else t[index])
        return Task(
            name=self.name,
            clean=self.clean[index],
            corrupt=self.corrupt[index],
            answer=pick(self.answer),
            distractor=pick(self.distractor),
            position=self.position,
            targets=pick(self.targets),
            features={k: v[index] for k, v in self.features.items()},
            prompts=tuple(self.prompts[i] for i in range(len(self.prompts))[index]) if isinstance(index, slice)
            else tuple(self.prompts[i] for i in index.tolist()) if self.prompts else (),
            cluster=self.cluster,
        )
