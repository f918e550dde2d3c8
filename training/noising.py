"""The pretraining corruptions: what the model must undo.

    masked-lm   BERT (Devlin et al. 2019, 3.1): of a text's n tokens (</s> excluded), max(1, round(0.15 n)) are
                chosen uniformly without replacement; each chosen one becomes <mask> with probability 0.8, a
                random token of the vocabulary (specials excluded) with 0.1, and stays as it is with 0.1. The
                labels are the original tokens at the chosen positions, -100 elsewhere.
    denoising   BART (Lewis et al. 2020, 2.2), text infilling: span lengths are drawn from Poisson(λ = 3) until
                they cover round(0.3 n) tokens (the last one cut to fit); the spans are laid at uniformly random,
                non-overlapping, non-adjacent places, and each is replaced by ONE <mask> (a 0-length span inserts
                a <mask>). With ``permute_sentences`` the sentences (ending in . ! or ?) are shuffled first. The
                labels are the original text, in its order; the encoder reads the corrupted one.

BART draws span starts that may overlap and merge; laying them apart keeps each replaced span's length a
Poisson draw, which the tests check. Both work on subword tokens (BART and BERT mask whole words).

Every draw comes from a numpy Generator seeded with (seed, epoch, row): a training row is corrupted afresh each
epoch (dynamic masking, as RoBERTa), the same way again after --resume, and validation rows (epoch -1) the same
way at every evaluation.
"""

from dataclasses import dataclass

import numpy as np

from .tokenizers import MASK

SENTENCE_ENDS = (".", "!", "?")
BERT_MASK, BERT_RANDOM = 0.8, 0.1  # of the chosen tokens: -> <mask>, -> a random token (the rest stay)


@dataclass(frozen=True)
class Noise:
    """The corruption settings of a run (DataArguments' fields of the same names) and its seed."""

    mlm_probability: float = 0.15
    mask_ratio: float = 0.3
    poisson_lambda: float = 3.0
    permute_sentences: bool = False
    seed: int = 42

    @classmethod
    def of(cls, data_args, seed: int) -> "Noise":
        return cls(
            data_args.mlm_probability, data_args.mask_ratio, data_args.poisson_lambda, data_args.permute_sentences, seed
        )

    def generator(self, epoch: int, row: int) -> np.random.Generator:
        """The draws of one row in one epoch (epoch -1: evaluation)."""
        return np.random.default_rng([self.seed, epoch + 1, row])


@dataclass(frozen=True)
class Vocabulary:
    """What the corruptions need from a tokenizer: the <mask> id, the range of ordinary ids, the sentence ends."""

    mask_id: int
    eos_id: int
    first_ordinary: int  # the specials take ids 0 .. first_ordinary - 1
    size: int
    sentence_ends: frozenset[int]

    @classmethod
    def of(cls, tokenizer) -> "Vocabulary":
        if tokenizer.mask_token_id is None:
            raise ValueError(f"pretraining needs a tokenizer with a {MASK} token; this one has none")
        specials = sorted(tokenizer.all_special_ids)
        if specials != list(range(len(specials))):
            raise ValueError(f"the special tokens must take the first ids; they have {specials}")
        ends = frozenset(i for token, i in tokenizer.get_vocab().items() if token.lstrip("▁") in SENTENCE_ENDS)
        return cls(tokenizer.mask_token_id, tokenizer.eos_token_id, len(specials), len(tokenizer), ends)


def body(ids: list[int], vocab: Vocabulary) -> list[int]:
    """A row's tokens without its closing </s>."""
    return ids[:-1] if ids and ids[-1] == vocab.eos_id else list(ids)


def mask_tokens(ids: list[int], vocab: Vocabulary, noise: Noise, rng: np.random.Generator):
    """(input_ids, labels) of BERT's masked LM (module docstring)."""
    tokens = body(ids, vocab)
    n = len(tokens)
    chosen = rng.choice(n, size=min(n, max(1, round(noise.mlm_probability * n))), replace=False)
    inputs, labels = list(tokens), [-100] * n
    for i in chosen.tolist():
        labels[i] = tokens[i]
        u = rng.random()
        if u < BERT_MASK:
            inputs[i] = vocab.mask_id
        elif u < BERT_MASK + BERT_RANDOM:
            inputs[i] = int(rng.integers(vocab.first_ordinary, vocab.size))
    return inputs + [vocab.eos_id], labels + [-100]


def span_lengths(n: int, noise: Noise, rng: np.random.Generator) -> list[int]:
    """Poisson(λ) lengths until they cover round(mask_ratio n) tokens, the last one cut to fit."""
    budget, lengths = round(noise.mask_ratio * n), []
    while sum(lengths) < budget:
        lengths.append(int(rng.poisson(noise.poisson_lambda)))
    if lengths:
        lengths[-1] -= sum(lengths) - budget
    return lengths


def lay_spans(n: int, lengths: list[int], rng: np.random.Generator) -> list[int]:
    """Start of each span: the n - L unmasked tokens split into k + 1 gaps, uniformly over all splits whose k - 1
    inner gaps hold at least one token (stars and bars). Spans that cannot fit are dropped from the end."""
    while lengths and n - sum(lengths) < len(lengths) - 1:
        lengths = lengths[:-1]
    k = len(lengths)
    if not k:
        return []
    free = n - sum(lengths) - (k - 1)  # tokens the gaps share beyond the one each inner gap needs
    bars = np.sort(rng.choice(free + k, size=k, replace=False))
    gaps = np.diff(np.concatenate([[-1], bars])) - 1 + (np.arange(k) > 0)  # tokens before each span
    spans_before = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)])
    return (np.cumsum(gaps) + spans_before).astype(np.int64).tolist()


def permute(tokens: list[int], vocab: Vocabulary, rng: np.random.Generator) -> list[int]:
    """The sentences of a text (each ends after a sentence-end token) in a random order."""
    sentences, start = [], 0
    for i, token in enumerate(tokens):
        if token in vocab.sentence_ends:
            sentences.append(tokens[start : i + 1])
            start = i + 1
    if start < len(tokens):
        sentences.append(tokens[start:])
    return [t for i in rng.permutation(len(sentences)).tolist() for t in sentences[i]]


def infill(ids: list[int], vocab: Vocabulary, noise: Noise, rng: np.random.Generator):
    """(input_ids, labels) of BART's text infilling (module docstring); labels = the original ids."""
    tokens = body(ids, vocab)
    source = permute(tokens, vocab, rng) if noise.permute_sentences else tokens
    lengths = span_lengths(len(source), noise, rng)
    inputs, position = [], 0
    for start, length in zip(lay_spans(len(source), lengths, rng), lengths):
        inputs += source[position:start] + [vocab.mask_id]
        position = start + length
    inputs += source[position:]
    return inputs + [vocab.eos_id], tokens + [vocab.eos_id]


class NoisingCollator:
    """Corrupts each training row afresh (its draws: (seed, epoch, row)), then pads as `pad` does."""

    def __init__(self, corrupt, vocab: Vocabulary, noise: Noise, pad):
        self.corrupt, self.vocab, self.noise, self.pad = corrupt, vocab, noise, pad
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __call__(self, rows: list[dict]):
        corrupted = []
        for row in rows:
            input_ids, labels = self.corrupt(
                row["input_ids"], self.vocab, self.noise, self.noise.generator(self.epoch, row["row"])
            )
            corrupted.append({"input_ids": input_ids, "labels": labels})
        return self.pad(corrupted)


__all__ = ["Noise", "NoisingCollator", "Vocabulary", "infill", "mask_tokens"]
