"""Metrics against hand-computed values and against independent implementations (jiwer, sklearn, sacrebleu)."""

import jiwer
import pytest
import sacrebleu
from sklearn.metrics import f1_score

from scratchformer.training.metrics import (
    ClassificationScores,
    G2PErrorRate,
    TaggingScores,
    TranslationScores,
    edit_distance,
)


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [
        ("", "", 0),
        ("a b c", "a b c", 0),
        ("a b", "a b c", 1),
        ("a x c", "a b c", 1),
        ("c b a", "a b c", 2),
        ("a b c d", "", 4),
        ("k i t t e n", "s i t t i n g", 3),
    ],
)
def test_edit_distance_by_hand(hyp, ref, expected):
    assert edit_distance(hyp.split(), ref.split()) == expected


def test_g2p_error_rate_by_hand():
    predictions = ["L IH V", "T AH M EY T OW", "K AE T", "D AO G"]
    references = [
        ["L AY V", "L IH V"],  # matches the 2nd reference: right, 0 edits
        ["T AH M AA T OW", "T AH M EY T OW"],  # matches the 2nd: right
        ["K AE T S"],  # 1 deletion against 4 phonemes
        ["D AA G", "D AO G Z"],  # 1 substitution (len 3) or 1 insertion (len 4): closest tie -> shorter, 1/3
    ]
    scores = G2PErrorRate().compute(predictions=predictions, references=references)
    assert scores["wer"] == pytest.approx(2 / 4)
    assert scores["per"] == pytest.approx((0 + 0 + 1 + 1) / (3 + 6 + 4 + 3))


def test_g2p_error_rate_single_reference_matches_jiwer():
    """With one reference each, PER is jiwer's WER over phoneme 'words' (corpus level)."""
    predictions = ["AH B K", "S IH T", "N", "P L EY S IH"]
    references = ["AH B", "S IH T IH NG", "N AA", "P L EY S"]
    scores = G2PErrorRate().compute(predictions=predictions, references=[[r] for r in references])
    assert scores["per"] == pytest.approx(jiwer.wer(references, predictions))
    assert scores["wer"] == pytest.approx(4 / 4)


def test_g2p_error_rate_add_batch_equals_compute():
    metric = G2PErrorRate()
    metric.add_batch(predictions=["A B"], references=[["A B"]])
    metric.add_batch(predictions=["A"], references=[["A C"]])
    assert metric.compute() == {"wer": 0.5, "per": pytest.approx(1 / 4)}


def test_translation_scores_match_sacrebleu():
    predictions = ["the cat sat on the mat", "a dog ran in the park today"]
    references = [["the cat sat on the mat"], ["a dog runs in the park"]]
    scores = TranslationScores().compute(predictions=predictions, references=references)
    streams = [[r[0] for r in references]]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, streams).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, streams).score)
    perfect = TranslationScores().compute(predictions=["a b c d e"], references=[["a b c d e"]])
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)


def test_lowercased_bleu_ignores_case_and_tokenizes_punctuation():
    """bleu_lowercase: the tokenized, lower-cased BLEU of the Multi30k papers. Only case differs here, so it is
    100 while cased BLEU is not; both score 13a tokens, which split the full stop off 'Wiese.'."""
    predictions, references = ["Ein Hund läuft über die Wiese."], [["ein Hund läuft über die wiese."]]
    scores = TranslationScores().compute(predictions=predictions, references=references)
    assert scores["bleu_lowercase"] == pytest.approx(100.0) and scores["bleu"] < 60
    tokens = "Ein Hund läuft über die Wiese .", "ein Hund läuft über die wiese ."
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu([tokens[0]], [[tokens[1]]], tokenize="none").score)


def test_tagging_scores_by_hand():
    # POS tags (not IOB): accuracy only
    pos = TaggingScores().compute(
        predictions=[["DET", "NOUN", "VERB"], ["PRON", "VERB"]], references=[["DET", "NOUN", "NOUN"], ["PRON", "VERB"]]
    )
    assert pos == {"accuracy": pytest.approx(4 / 5)}
    # NER (IOB): gold entities PER(0-1), LOC(3); predicted PER(0-1), LOC(3), ORG(4) -> P 2/3, R 2/2
    ner = TaggingScores().compute(
        predictions=[["B-PER", "I-PER", "O", "B-LOC", "B-ORG"]], references=[["B-PER", "I-PER", "O", "B-LOC", "O"]]
    )
    assert ner["accuracy"] == pytest.approx(4 / 5)
    assert ner["precision"] == pytest.approx(2 / 3)
    assert ner["recall"] == pytest.approx(1.0)
    assert ner["f1"] == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_classification_scores_by_hand_and_sklearn():
    predictions = [0, 0, 1, 1, 2, 0]
    references = [0, 1, 1, 1, 2, 2]
    scores = ClassificationScores().compute(predictions=predictions, references=references)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # class 0: tp1 fp2 fn0 -> 2/4; class 1: tp2 fp0 fn1 -> 4/5; class 2: tp1 fp0 fn1 -> 2/3
    assert scores["macro_f1"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    assert scores["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
