"""Data loading through `datasets`, tokenizers, label alignment, batching and the bad-input errors."""

import json
import logging

import pytest
from transformers import AutoTokenizer

from scratchformer.training.args import DataArguments
from scratchformer.training.data import (
    Collator,
    LengthGroupedBatchSampler,
    load_task,
    tokenize,
    train_tokenizer,
)
from scratchformer.training.files import read_conll
from scratchformer.training.g2p import SPLIT_BUCKETS, group_splits, load_g014b2b, word_bucket
from scratchformer.training.tokenizers import encode_phonemes, train_g2p_tokenizer, train_text_tokenizer

CONLLU = """# sent_id = 1
# text = The dog barks.
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tbarks\tbark\tVERB\tVBZ\t_\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = 2
1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
2.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
"""

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def write(path, text):
    path.write_text(text)
    return str(path)


def test_read_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    ds = read_conll(write(tmp_path / "a.conllu", CONLLU))
    assert ds["tokens"][:] == [["The", "dog", "barks", "."], ["do", "n't", "go"]]
    assert ds["tags"][:] == [["DET", "NOUN", "VERB", "PUNCT"], ["AUX", "PART", "VERB"]]


def test_read_conll_takes_first_and_last_columns(tmp_path):
    ds = read_conll(write(tmp_path / "a.conll", CONLL))
    assert ds["tokens"][:] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert ds["tags"][:] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]


def test_translation_json_with_language_pairs(tmp_path):
    rows = [{"translation": {"de": f"hallo {i}", "en": f"hello {i}"}} for i in range(30)]
    path = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows))
    data = load_task(DataArguments(task="translation", train_file=path, source_lang="de", target_lang="en"))
    assert set(data.raw) == {"train", "validation"}
    assert data.raw["train"][0].keys() == {"source", "target", "_line"}  # and the line each row came from
    assert set(data.raw["validation"].column_names) == {"source", "references", "_line"}
    assert len(data.raw["train"]) + len(data.raw["validation"]) == 30
    for row in [*data.raw["train"], *data.raw["validation"]]:  # line n holds row n - 1: "hallo {n - 1}"
        assert row["source"] == f"hallo {row['_line'] - 1}"
    assert data.where("validation", [0]) == f"{path}:{data.raw['validation'][0]['_line']}"
    with pytest.raises(ValueError, match=r"languages \['fr'\] not in column 'translation'"):
        load_task(DataArguments(task="translation", train_file=path, source_lang="de", target_lang="fr"))


def test_missing_column_names_the_argument_and_the_columns(tmp_path):
    path = write(tmp_path / "train.csv", "sentence,sentiment\ngood film,pos\nbad film,neg\n")
    with pytest.raises(ValueError, match=r"--text_column 'text'.*the columns are \['sentence', 'sentiment'\]"):
        load_task(DataArguments(task="sequence-classification", train_file=path))
    data = load_task(
        DataArguments(
            task="sequence-classification",
            train_file=path,
            text_column="sentence",
            label_column="sentiment",
            validation_file=path,
        )
    )
    assert data.label_list == ["neg", "pos"]


def test_unknown_task_and_empty_split(tmp_path):
    with pytest.raises(ValueError, match="task='summarization'; allowed: g2p, translation, token-classification"):
        load_task(DataArguments(task="summarization", train_file="x.csv"))
    train = write(tmp_path / "train.tsv", "text\tlabel\ngood\tpos\nbad\tneg\n")
    empty = write(tmp_path / "dev.tsv", "text\tlabel\n")
    with pytest.raises(ValueError, match="the validation split is empty"):
        load_task(DataArguments(task="sequence-classification", train_file=train, validation_file=empty))


def test_labels_outside_the_label_list(tmp_path):
    train = write(tmp_path / "train.tsv", "text\tlabel\ngood\tpos\nbad\tneg\n")
    dev = write(tmp_path / "dev.tsv", "text\tlabel\nmeh\tneutral\n")
    with pytest.raises(ValueError, match=r"dev.tsv:2: labels \['neutral'\] are not in the label list \['neg', 'pos'\]"):
        load_task(DataArguments(task="sequence-classification", train_file=train, validation_file=dev))
    with pytest.raises(ValueError, match=r"train.tsv:3: labels \['neg'\]"):
        load_task(
            DataArguments(
                task="sequence-classification", train_file=train, validation_file=train, label_names=["pos", "other"]
            )
        )
    tags = write(tmp_path / "dev.conllu", CONLLU)
    with pytest.raises(ValueError, match=r"labels \['AUX', 'PART'\] are not in the label list"):
        load_task(
            DataArguments(
                task="token-classification",
                train_file=tags,
                validation_file=tags,
                label_names=["DET", "NOUN", "VERB", "PUNCT"],
            )
        )


def test_unknown_file_type(tmp_path):
    with pytest.raises(ValueError, match=r"unknown file type '\.xml'; allowed: \.json"):
        load_task(DataArguments(task="translation", train_file=str(tmp_path / "a.xml")))


def test_words_like_null_stay_strings_in_csv(tmp_path):
    path = write(tmp_path / "train.tsv", "source\ttarget\nnull\tN AH L\nna\tN AA\nnone\tN AH N\n")
    data = load_task(DataArguments(task="g2p", train_file=path, validation_file=path))
    assert sorted(data.raw["train"]["source"][:]) == ["na", "none", "null"]


def test_token_labels_align_to_first_subword(tmp_path):
    data = load_task(
        DataArguments(
            task="token-classification",
            train_file=write(tmp_path / "a.conllu", CONLLU),
            validation_file=write(tmp_path / "b.conllu", CONLLU),
        )
    )
    tokenizer = train_text_tokenizer(["The dog barks . do n't go"] * 5, "char")  # one subword per character
    features = tokenize(data, tokenizer, 64, 64, "truncate")
    labels, ids = features["train"][0]["labels"], features["train"][0]["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    label_of = {i: name for i, name in enumerate(data.label_list)}
    kept = [(t, label_of[y]) for t, y in zip(tokens, labels) if y != -100]
    assert [tag for _, tag in kept] == ["DET", "NOUN", "VERB", "PUNCT"]  # one label per word
    assert [t for t, _ in kept] == ["▁", "▁", "▁", "▁"]  # on the first piece of each word
    assert labels[-1] == -100 and tokens[-1] == "</s>"
    every = tokenize(data, tokenizer, 64, 64, "truncate", label_all_subwords=True)["train"][0]["labels"]
    assert sum(y != -100 for y in every) == len(ids) - 1


def test_too_long_warns_with_a_count_or_errors(tmp_path, caplog):
    rows = "text\tlabel\n" + "".join(f"{'word ' * n}\t{'a' if n % 2 else 'b'}\n" for n in (2, 3, 20, 30))
    path = write(tmp_path / "train.tsv", rows)
    data = load_task(DataArguments(task="sequence-classification", train_file=path, validation_file=path))
    tokenizer = train_text_tokenizer(["word"] * 10, "wordpiece", vocab_size=50)
    with caplog.at_level(logging.WARNING):
        features = tokenize(data, tokenizer, 10, 10, "truncate")
    assert "2 of 4 text sequences are longer than 10 tokens (longest 31" in caplog.text
    assert max(len(x) for x in features["train"]["input_ids"][:]) == 10
    assert features["train"][3]["input_ids"][-1] == tokenizer.eos_token_id  # </s> kept at the end
    with pytest.raises(ValueError, match="2 of 4 text sequences are longer than 10 tokens"):
        tokenize(data, tokenizer, 10, 10, "error")


def test_g2p_tokenizer_round_trip_through_auto_tokenizer(tmp_path):
    tokenizer = train_g2p_tokenizer(["transformer", "it's"], ["T R AE N S F AO R M ER", "IH T S"])
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    ids = loaded("Transformer")["input_ids"]
    assert loaded.convert_ids_to_tokens(ids) == list("transformer") + ["</s>"]
    phones = encode_phonemes(loaded, "T R AE N")
    assert loaded.decode(phones, skip_special_tokens=True) == "T R AE N"
    with pytest.raises(ValueError, match=r"phonemes \['ZZ'\] are not in the tokenizer's vocabulary"):
        encode_phonemes(loaded, "T ZZ")


@pytest.mark.parametrize("kind", ["bpe", "unigram", "wordpiece", "char"])
def test_text_tokenizers_have_the_special_ids_and_decode(kind, tmp_path):
    texts = ["the cat sat on the mat", "a dog is not a cat", "hello world"] * 20
    tokenizer = train_text_tokenizer(texts, kind, vocab_size=80)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    ids = loaded("the cat sat")["input_ids"]
    assert ids[-1] == 2 and loaded.pad_token_id == 0 and loaded.bos_token_id == 1
    assert loaded.decode(ids, skip_special_tokens=True) == "the cat sat"


def test_word_split_is_stable_and_disjoint():
    assert word_bucket("Transformer") == word_bucket("transformer")
    assert word_bucket("transformer") == int(__import__("hashlib").md5(b"transformer").hexdigest()[:8], 16) % 1000
    pairs = {split: [] for split in SPLIT_BUCKETS}
    for w in (f"w{i}" for i in range(3000)):
        split = next(s for s, b in SPLIT_BUCKETS.items() if word_bucket(w) in b)
        pairs[split].append((w, "W"))
    ds = group_splits(pairs)
    words = {s: set(ds[s]["source"][:]) for s in ds}
    assert not (words["train"] & words["test"]) and not (words["train"] & words["validation"])
    assert 0.03 < len(words["test"]) / 3000 < 0.07


def test_g014b2b_loader_holds_dev_out_of_train_and_groups_references(tmp_path):
    import gzip

    train = [f"WORD{i}\tW ER D" for i in range(300)] + ["LIVE\tL AY V", "LIVE\tL IH V", "NULL\tN AH L"]
    with gzip.open(tmp_path / "g014b2b.train.gz", "wt") as f:
        f.write("\n".join(train) + "\n")
    write(tmp_path / "g014b2b.test", "READ\tR EH D\nREAD\tR IY D\nNA\tN AA\n")
    ds = load_g014b2b(str(tmp_path), dev_per_mille=100)
    assert dict(zip(ds["test"]["source"][:], ds["test"]["references"][:])) == {
        "read": ["R EH D", "R IY D"],
        "na": ["N AA"],
    }
    train_words, dev_words = set(ds["train"]["source"][:]), set(ds["validation"]["source"][:])
    assert not train_words & dev_words and 10 < len(dev_words) < 60
    assert len(train_words | dev_words) == 302 and "null" in train_words | dev_words
    with pytest.raises(FileNotFoundError, match="g014b2b: none of"):
        load_g014b2b(str(tmp_path / "nowhere"))


def test_batch_sampler_is_reproducible_and_respects_the_token_budget():
    lengths = [(i * 7) % 23 + 1 for i in range(500)]
    a = LengthGroupedBatchSampler(lengths, max_tokens=60, seed=3)
    b = LengthGroupedBatchSampler(lengths, max_tokens=60, seed=3)
    assert list(a) == list(b)
    assert sorted(i for batch in a for i in batch) == list(range(500))  # every row once
    assert all(max(lengths[i] for i in batch) * len(batch) <= 60 for batch in a)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(i for batch in a for i in batch) == list(range(500))
    a.set_epoch(0)
    assert list(a) == first
    fixed = LengthGroupedBatchSampler(lengths, batch_size=16, seed=0)
    assert {len(batch) for batch in fixed} <= set(range(1, 17)) and sum(map(len, fixed)) == 500


def test_collator_pads_ids_and_labels():
    batch = Collator(pad_token_id=0)([{"input_ids": [5, 6, 2], "labels": [7, 2]}, {"input_ids": [5, 2], "labels": [2]}])
    assert batch["input_ids"].tolist() == [[5, 6, 2], [5, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 2], [2, -100]]
    scalar = Collator(0)([{"input_ids": [4, 2], "labels": 1}, {"input_ids": [2], "labels": 0}])
    assert scalar["labels"].tolist() == [1, 0]


def test_train_tokenizer_sees_only_the_train_split(tmp_path):
    train = write(tmp_path / "train.tsv", "source\ttarget\nab\tA B\n")
    dev = write(tmp_path / "dev.tsv", "source\ttarget\nxyz\tX Y Z\n")
    data = load_task(DataArguments(task="g2p", train_file=train, validation_file=dev))
    vocab = train_tokenizer(data, DataArguments()).get_vocab()
    assert {"a", "b", "A", "B"} <= set(vocab) and not {"x", "X"} & set(vocab)


def test_hub_style_class_label_features_become_label_names(tmp_path):
    """Hub datasets (glue/sst2, conll2003) store labels as ClassLabel ids; parquet keeps those features."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    sst = Dataset.from_dict(
        {"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]},
        features=Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])}),
    )
    sst.to_parquet(tmp_path / "sst.parquet")
    data = load_task(
        DataArguments(
            task="sequence-classification",
            train_file=str(tmp_path / "sst.parquet"),
            validation_file=str(tmp_path / "sst.parquet"),
            text_column="sentence",
        )
    )
    assert data.raw["train"]["label"][:] == ["positive", "negative", "positive"]
    assert data.label_list == ["negative", "positive"]
    ner = Dataset.from_dict(
        {"tokens": [["EU", "rejects"]], "ner_tags": [[1, 0]]},
        features=Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=["O", "B-ORG"]))}),
    )
    ner.to_parquet(tmp_path / "ner.parquet")
    data = load_task(
        DataArguments(
            task="token-classification",
            train_file=str(tmp_path / "ner.parquet"),
            validation_file=str(tmp_path / "ner.parquet"),
            tags_column="ner_tags",
        )
    )
    assert data.raw["train"]["tags"][:] == [["B-ORG", "O"]]
