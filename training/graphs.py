"""Attention over a graph of words (``--attention_graph``): the encoder's self-attention restricted to a word
graph, here the dependency tree of each CoNLL-U sentence.

Word level: words a, b are adjacent, A[a, b], iff a = b (a self-loop) or one is the other's head (the tree's
edges, undirected). Subword level, for a row of n tokens whose token p belongs to word w(p) (w(p) = -1 for the
special tokens <s>, </s>), padded to `length`:

    keep[p, q] = p, q < n  and  ( (w(p) >= 0 and w(q) >= 0 and A[w(p), w(q)])  or  p = q )

so every subword of word a sees every subword of word b iff A[a, b]; a special token sees itself only and is
seen by no word (were it seen by all and seeing all, it would relay everything to everything in two layers,
and the comparison with full attention would measure nothing); padding sees and is seen by nothing. With L
encoder layers a word's output depends on the words within L tree edges of it. keep's diagonal is True
exactly at the n real tokens.
"""

import torch

from .files import file_kind

ATTENTION_GRAPHS = ("none", "dependency-tree")
SPECIAL = -1  # the word id of a token that belongs to no word (<s>, </s>)


def tree_edges(heads: list[int]) -> list[list[int]]:
    """[dependent, head] word pairs (0-based) of a sentence's HEAD column (1-based, 0 = the root)."""
    return [[word, head - 1] for word, head in enumerate(heads) if head > 0]


def graph_attention_mask(word_ids: list[int], edges: list[list[int]], length: int) -> torch.Tensor:
    """keep (length, length), bool, of one row (module docstring): word_ids[p] = w(p), edges = word pairs."""
    n, w = len(word_ids), torch.tensor(word_ids, dtype=torch.long)
    words = 1 + max([0, *word_ids, *(word for edge in edges for word in edge)])  # a truncated row: edges past w
    adjacent = torch.eye(words, dtype=torch.bool)
    if edges:
        a, b = torch.tensor(edges, dtype=torch.long).T
        adjacent[a, b] = adjacent[b, a] = True
    real = w >= 0
    keep = torch.zeros(length, length, dtype=torch.bool)
    index = w.clamp(min=0)
    keep[:n, :n] = adjacent[index[:, None], index[None, :]] & real[:, None] & real[None, :]
    keep[:n, :n] |= torch.eye(n, dtype=torch.bool)
    return keep


def check_attention_graph(data_args, task):
    """attention_graph's errors before anything is loaded: an unknown value, a task whose rows are not words,
    data that are not CoNLL-U files."""
    value = data_args.attention_graph
    if value not in ATTENTION_GRAPHS:
        raise ValueError(f"attention_graph={value!r}; allowed: {', '.join(ATTENTION_GRAPHS)}")
    if value == "none":
        return
    if not task.word_graphs:
        raise ValueError(
            f"attention_graph={value!r} needs a tagging task (one label per word) on CoNLL-U files; "
            f"allowed for task={task.name!r}: none"
        )
    files = [data_args.train_file, data_args.validation_file, data_args.test_file]
    other = [path for path in files if path and file_kind(path) != ".conllu"]
    if data_args.dataset_name or not data_args.train_file or other:
        given = data_args.dataset_name or ", ".join(other) or "no --train_file"
        raise ValueError(
            f"attention_graph={value!r} reads each sentence's tree from CoNLL-U files (HEAD, column 7); "
            f"got {given}. Pass .conllu files (.gz ok) or attention_graph='none'; allowed: {', '.join(ATTENTION_GRAPHS)}"
        )


__all__ = ["ATTENTION_GRAPHS", "SPECIAL", "check_attention_graph", "graph_attention_mask", "tree_edges"]
