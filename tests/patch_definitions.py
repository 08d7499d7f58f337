"""which/branch/key for common experiments, written from the definitions in the README.

Shared by the engine tests of every architecture; independent of the package's own
interventions (which compile the same experiments another way), so a test that compares
the two is not comparing the code with itself.
"""
from __future__ import annotations

from causal_hypotheses.graph import within
from causal_hypotheses.graph import component


def position(name: str) -> int:
    """Order of a component in the residual stream: embed, a0, m0, a1, m1, ..."""
    return component(name).order


def downstream_patch(node: str):
    """which/branch/key for activation patching ``node``: it reads input 1 everywhere it is
    read (downstream components recomputed); every other path reads input 0.  Written
    from the definition, independently of the package's interventions."""

    def which(path):
        return 1 if node in path else 0

    def branch(path):
        if node in path:
            return False
        last = path[-1]
        return (within(last, node) and last != node) or position(last) > position(node)

    def key(path):
        return node in path

    return which, branch, key


def edge_patch(sender: str, receiver: str):
    """which/branch/key for path patching the direct edge sender -> receiver (a head's
    q/k/v input): paths through that edge read input 1, all others input 0, and
    everything downstream of the receiver is recomputed."""

    def has_edge(path):
        return any(path[i] == receiver and path[i + 1] == sender for i in range(len(path) - 1))

    def which(path):
        return 1 if has_edge(path) else 0

    def branch(path):
        if has_edge(path):
            return False
        last = path[-1]
        if within(last, receiver) or position(last) > position(receiver):
            return True
        return len(path) >= 2 and path[-2] == receiver and within(last, sender) and last != sender

    def key(path):  # branch(path) looks at path[-2], so the key must too
        return has_edge(path), len(path) >= 2 and path[-2] == receiver

    return which, branch, key


def split_everything(which_leaf):
    """Fully treeify: every component recomputed from its inputs, embed reads which_leaf."""
    return (lambda path: which_leaf), (lambda path: path[-1] != "embed"), (lambda path: 0)
