"""Task metrics as local `evaluate` modules: nothing is fetched from the Hub.

Each class is an ``evaluate.Metric`` (``add_batch`` / ``compute``), computed by hand or with the package the
Hub module would wrap (sacrebleu, seqeval):

    G2PErrorRate         wer, per   multi-reference: a word is right if it equals ANY reference;
                                    PER = sum of edit distances to the closest reference / sum of its lengths
    TranslationScores    bleu, chrf (sacrebleu, corpus level)
    TaggingScores        accuracy (per token), and seqeval precision/recall/f1 when the tags are IOB/BIO
    ClassificationScores accuracy, macro_f1
    MaskedTokenAccuracy  accuracy   the pretraining tasks: predicted vs original token at each masked position
"""

import datasets
import evaluate
import sacrebleu

STRINGS = datasets.Sequence(datasets.Value("string"))


def edit_distance(hyp: list, ref: list) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        current = [i]
        for j, r in enumerate(ref, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


class LocalMetric(evaluate.Metric):
    """An ``evaluate.Metric`` defined here: a subclass states its inputs (``input_spec`` in words,
    ``input_features`` as datasets features) and ``_compute``; its docstring is the description."""

    input_spec: str
    input_features: datasets.Features
    reports: tuple[str, ...]  # the names of the scores `compute` returns
    lower_is_better: frozenset[str] = frozenset()  # the scores that improve by going down (the rest go up)

    def _info(self):
        return evaluate.MetricInfo(
            description=self.__doc__, citation="", inputs_description=self.input_spec, features=self.input_features
        )


class G2PErrorRate(LocalMetric):
    """Word error rate and phoneme error rate of space-separated phoneme strings, several references each."""

    input_spec = "predictions: str; references: list[str]"
    input_features = datasets.Features({"predictions": datasets.Value("string"), "references": STRINGS})
    reports = ("wer", "per")
    lower_is_better = frozenset({"wer", "per"})

    def _compute(self, predictions, references):
        wrong_words, edits, ref_len = 0, 0, 0
        for prediction, refs in zip(predictions, references):
            if not refs:
                raise ValueError("G2PErrorRate: every prediction needs at least one reference")
            hyp = prediction.split()
            # closest reference: fewest edits, then the shorter one (the smaller error rate)
            distance, length = min((edit_distance(hyp, r.split()), len(r.split())) for r in refs)
            wrong_words += distance > 0
            edits += distance
            ref_len += length
        return {"wer": wrong_words / max(len(predictions), 1), "per": edits / max(ref_len, 1)}


class TranslationScores(LocalMetric):
    """Corpus sacreBLEU and chrF (sacrebleu defaults: 13a tokenisation, chrF with char order 6, beta 2).

    bleu: detokenized, cased (the sacreBLEU signature); bleu_lowercase: the same 13a tokens lower-cased, the
    "tokenized, lowercased" BLEU that Multi30k papers report (they score Moses-tokenized text with multi-bleu)."""

    input_spec = "predictions: str; references: list[str]"
    input_features = datasets.Features({"predictions": datasets.Value("string"), "references": STRINGS})
    reports = ("bleu", "bleu_lowercase", "chrf")

    def _compute(self, predictions, references):
        width = max((len(r) for r in references), default=1)
        if any(len(r) != width for r in references):
            raise ValueError("TranslationScores: every prediction needs the same number of references")
        streams = [[r[k] for r in references] for k in range(width)]  # sacrebleu: one stream per reference
        return {
            "bleu": sacrebleu.corpus_bleu(predictions, streams).score,
            "bleu_lowercase": sacrebleu.corpus_bleu(predictions, streams, lowercase=True).score,
            "chrf": sacrebleu.corpus_chrf(predictions, streams).score,
        }


def is_iob(labels) -> bool:
    """True when every tag is O or starts with B-/I-/E-/S- (then seqeval's entity F1 applies)."""
    return all(tag == "O" or tag[:2] in ("B-", "I-", "E-", "S-") for tag in labels)


class TaggingScores(LocalMetric):
    """Token accuracy over word-level tags; entity precision/recall/F1 (seqeval) when the tags are IOB."""

    input_spec = "predictions, references: list[str] per sentence"
    input_features = datasets.Features({"predictions": STRINGS, "references": STRINGS})
    reports = ("accuracy", "precision", "recall", "f1")  # the last three for IOB tags only

    def _compute(self, predictions, references):
        pairs = [(p, r) for sent_p, sent_r in zip(predictions, references) for p, r in zip(sent_p, sent_r, strict=True)]
        scores = {"accuracy": sum(p == r for p, r in pairs) / max(len(pairs), 1)}
        if pairs and is_iob({r for _, r in pairs} | {p for p, _ in pairs}):
            # imported here: seqeval pulls in scikit-learn (~2 s), which only IOB tag sets need
            from seqeval.metrics import f1_score, precision_score, recall_score

            scores |= {
                "precision": precision_score(references, predictions, zero_division=0),
                "recall": recall_score(references, predictions, zero_division=0),
                "f1": f1_score(references, predictions, zero_division=0),
            }
        return scores


class ClassificationScores(LocalMetric):
    """Accuracy and macro-F1 (unweighted mean of per-class F1 over the classes seen in predictions or references)."""

    input_spec = "predictions, references: int class ids"
    input_features = datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})
    reports = ("accuracy", "macro_f1")

    def _compute(self, predictions, references):
        f1s = []
        for c in sorted(set(predictions) | set(references)):
            tp = sum(p == c and r == c for p, r in zip(predictions, references))
            fp = sum(p == c and r != c for p, r in zip(predictions, references))
            fn = sum(p != c and r == c for p, r in zip(predictions, references))
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        n = max(len(predictions), 1)
        return {
            "accuracy": sum(p == r for p, r in zip(predictions, references)) / n,
            "macro_f1": sum(f1s) / max(len(f1s), 1),
        }


class MaskedTokenAccuracy(LocalMetric):
    """Share of the corrupted positions whose original token the model ranks first (teacher forcing)."""

    input_spec = "predictions, references: token ids at the positions to predict, per text"
    input_features = datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value("int64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
    )
    reports = ("accuracy",)

    def _compute(self, predictions, references):
        pairs = [(p, r) for sent_p, sent_r in zip(predictions, references) for p, r in zip(sent_p, sent_r, strict=True)]
        return {"accuracy": sum(p == r for p, r in pairs) / max(len(pairs), 1)}


__all__ = [
    "ClassificationScores",
    "MaskedTokenAccuracy",
    "G2PErrorRate",
    "LocalMetric",
    "TaggingScores",
    "TranslationScores",
    "edit_distance",
    "is_iob",
]
