"""The task registry: each record agrees with transformers and with its metric, no other module dispatches on a
task name, and a new task is one record: registered, it trains, saves and predicts with nothing else changed."""

import ast
import json
import random
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, pipelines

from scratchformer import ScratchformerConfig
from scratchformer.training import cli, tasks
from scratchformer.training.args import from_flat
from scratchformer.training.metrics import G2PErrorRate
from scratchformer.training.tasks import TASKS, PretrainingTask, TranslationTask, get_task, task_of_architecture
from scratchformer.training.trainer import train

TRAINING = Path(tasks.__file__).parent
SAMPLE_SCORES = {  # one tiny input per metric
    "g2p": (["AA B"], [["AA B", "AA"]]),
    "translation": (["a b c d"], [["a b c d"]]),
    "token-classification": ([["B-X", "O"]], [["B-X", "I-X"]]),
    "sequence-classification": ([0, 1], [0, 0]),
    "masked-lm": ([[5, 6]], [[5, 7]]),
    "denoising": ([[5, 6, 2]], [[5, 6, 2]]),
}


@pytest.mark.parametrize("name", TASKS)
def test_each_record_agrees_with_transformers_and_its_metric(name):
    task = get_task(name)
    assert task.name == name
    # its Auto class maps our config to its model class, as from_pretrained will
    assert task.auto_class._model_mapping[ScratchformerConfig] is task.model_class
    assert task.seq2seq == (task.model_class_name == "ScratchformerForConditionalGeneration")
    if not task.seq2seq:  # a tag transformers' pipeline() knows (transformers 5 has no text2text pipeline)
        assert task.pipeline_tag in pipelines.SUPPORTED_TASKS
    # the metric reports what the record says, and the best-by metric is one of them
    scores = task.metric().compute(predictions=SAMPLE_SCORES[name][0], references=SAMPLE_SCORES[name][1])
    assert set(scores) == set(task.metric.reports) and task.best_metric in (*scores, "loss")
    labelled = not task.seq2seq and not isinstance(task, PretrainingTask)
    assert task.label_column in ("tags", "label") if labelled else task.label_column is None


def test_metric_directions():
    g2p, translation = get_task("g2p"), get_task("translation")
    assert g2p.is_better("wer", 0.2, 0.3) and not g2p.is_better("wer", 0.3, 0.2) and g2p.is_better("per", 0.1, 0.2)
    assert translation.is_better("bleu", 30.0, 20.0) and not translation.is_better("bleu", 20.0, 30.0)
    for task in TASKS.values():
        assert task.is_better("loss", 1.0, 2.0) and not task.is_better("loss", 2.0, 1.0)
        assert task.is_better(task.best_metric, 0.5, None)  # the first evaluation is the best so far
        for bad in (float("nan"), float("inf"), float("-inf")):  # a diverged model never becomes the best
            assert not task.is_better(task.best_metric, bad, None) and not task.is_better("loss", bad, 1.0)
    assert G2PErrorRate.lower_is_better == {"wer", "per"}


def test_unknown_task_and_architecture():
    with pytest.raises(
        ValueError, match="task='summarize'; allowed: g2p, translation, token-classification, sequence-classification"
    ):
        get_task("summarize")
    assert task_of_architecture("ScratchformerForTokenClassification") is TASKS["token-classification"]
    assert task_of_architecture("ScratchformerModel") is None


def test_no_module_but_tasks_py_dispatches_on_a_task_name():
    """No comparison with a task name (`task == "g2p"`, `task in ("g2p", ...)`) and no map keyed by task names
    outside the registry: every such site reads the task's record instead."""
    names = set(TASKS)

    def task_names(node):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [v for element in node.elts for v in task_names(element)]
        return [node.value] if isinstance(node, ast.Constant) and node.value in names else []

    found = []
    for path in sorted(TRAINING.glob("*.py")):
        if path.name == "tasks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                operands = [key for key in node.keys if key is not None]
            else:
                continue
            found += [(path.name, node.lineno, name) for operand in operands for name in task_names(operand)]
    assert found == []


class NumberWords(TranslationTask):
    """A task defined outside the package: digits to number words, scored by exact match of the sentence."""

    name = "number-words"
    pipeline_tag = "text2text-generation"
    metric = G2PErrorRate  # wer = share of outputs that differ from the reference
    best_metric = "wer"
    description = "digits in, number words out"


def test_a_new_task_is_one_record(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(TASKS, NumberWords.name, NumberWords())
    rng = random.Random(0)
    words = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six"}
    rows = [rng.choices(list(words), k=rng.randint(1, 3)) for _ in range(300)]
    data = tmp_path / "numbers.jsonl"
    data.write_text(
        "".join(json.dumps({"source": " ".join(r), "target": " ".join(words[d] for d in r)}) + "\n" for r in rows)
    )
    values = dict(
        task="number-words",
        train_file=str(data),
        tokenizer_type="wordpiece",
        vocab_size=40,
        output_dir=str(tmp_path / "out"),
        report_to=[],
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        attention_heads=2,
        ffn_dim=64,
        max_steps=400,
        eval_every=200,
        dropout=0.0,
        batch_size=16,
        batch_tokens=0,
        learning_rate=5e-3,
        warmup_steps=10,
        log_every=10,
    )
    results = train(*from_flat(values))
    assert results["validation"]["wer"] < 0.5  # it learned the task (a constant output would be ~1.0)
    config = AutoConfig.from_pretrained(tmp_path / "out")
    assert config.architectures == ["ScratchformerForConditionalGeneration"]
    # predict prints what the saved model generates, loaded the plain transformers way (the exact words of a
    # 400-step model depend on the float summation order of the run, so they are not asserted)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out")
    generated = model.generate(**tokenizer(["2 5"], return_tensors="pt"))
    expected = tokenizer.decode(generated[0], skip_special_tokens=True)
    assert set(expected.split()) <= set(words.values())
    capsys.readouterr()
    assert cli.main(["predict", str(tmp_path / "out"), "2 5"]) == 0
    assert capsys.readouterr().out == f"2 5\t{expected}\n"
