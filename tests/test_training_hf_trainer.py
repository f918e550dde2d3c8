"""Users bring their own loops: every head trains under transformers' Trainer / Seq2SeqTrainer, fed by our
data pipeline (load_task -> tokenizer -> tokenize -> Collator), and its evaluation computes our metrics."""

import pytest
import torch
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments

from scratchformer.training.args import DataArguments, ModelArguments
from scratchformer.training.building import build_model, generation_config
from scratchformer.training.data import Collator, load_task, tokenize, train_tokenizer
from scratchformer.training.tasks import get_task

MODEL = ModelArguments(d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=64, dropout=0.0)


def prepare(tmp_path, task, rows, name="train.tsv"):
    path = tmp_path / name
    path.write_text(rows)
    args = DataArguments(task=task, train_file=str(path), validation_file=str(path), tokenizer_type="char")
    data = load_task(args)
    tokenizer = train_tokenizer(data, args)
    features = tokenize(data, tokenizer, 64, 64, "truncate")
    model = build_model(data.task, tokenizer, data.label_list, MODEL)
    return data, tokenizer, features, model


def trainer_args(cls, tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "hf"),
        max_steps=6,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    return cls(**(defaults | kwargs))


def first_and_last_loss(trainer):
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return logged[0], logged[-1]


def validation_batch(features, tokenizer):
    """The whole validation split as one padded batch, through our collator (the Trainer's own path aside)."""
    rows = [
        {k: features["validation"][i][k] for k in ("input_ids", "labels")} for i in range(len(features["validation"]))
    ]
    return Collator(tokenizer.pad_token_id)(rows)


def test_seq2seq_trainer_trains_and_generates(tmp_path):
    rows = "source\ttarget\n" + "".join(
        f"{w}\t{' '.join(c.upper() for c in w)}\n"
        for w in ["cab", "bad", "dab", "ace", "bead", "face", "fade", "cafe"] * 4
    )
    data, tokenizer, features, model = prepare(tmp_path, "g2p", rows)
    model.generation_config = generation_config(model, num_beams=2, max_new_tokens=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def compute_metrics(prediction):
        ids = [[t for t in row if t >= 0] for row in prediction.predictions]  # Trainer pads with -100
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        return get_task("g2p").metric().compute(predictions=texts, references=data.raw["validation"]["references"][:])

    trainer = Seq2SeqTrainer(
        model=model,
        args=trainer_args(Seq2SeqTrainingArguments, tmp_path, predict_with_generate=True),
        data_collator=Collator(tokenizer.pad_token_id),
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    result = trainer.train()
    assert result.global_step == 6 and torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    first, last = first_and_last_loss(trainer)
    assert last < first
    scores = trainer.evaluate()
    # the Trainer's generate-and-score == generating the validation split ourselves and scoring it
    batch = validation_batch(features, tokenizer)
    model.eval()
    with torch.no_grad():
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    ours = (
        get_task("g2p")
        .metric()
        .compute(
            predictions=tokenizer.batch_decode(generated, skip_special_tokens=True),
            references=data.raw["validation"]["references"][:],
        )
    )
    assert scores["eval_wer"] == pytest.approx(ours["wer"]) and scores["eval_per"] == pytest.approx(ours["per"])


SENTENCE = (
    "1\tthe\tthe\tDET\t_\t_\t0\t_\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t0\t_\t_\t_\n3\truns\trun\tVERB\t_\t_\t0\t_\t_\t_\n"
)
ROWS = {
    "sequence-classification": (
        "train.tsv",
        "text\tlabel\n" + "good fun\tpos\nbad day\tneg\ngood one\tpos\nbad one\tneg\n" * 8,
    ),
    "token-classification": ("train.conllu", (SENTENCE + "\n") * 32),
}


@pytest.mark.parametrize("task", list(ROWS))
def test_trainer_trains_classification_heads(tmp_path, task):
    name, rows = ROWS[task]
    data, tokenizer, features, model = prepare(tmp_path, task, rows, name)

    def compute_metrics(prediction):
        best = prediction.predictions.argmax(-1)
        if task == "sequence-classification":
            return get_task(task).metric().compute(predictions=best.tolist(), references=prediction.label_ids.tolist())
        keep = prediction.label_ids != -100
        names = data.label_list
        return (
            get_task(task)
            .metric()
            .compute(
                predictions=[[names[p] for p in row[k]] for row, k in zip(best, keep)],
                references=[[names[y] for y in row[k]] for row, k in zip(prediction.label_ids, keep)],
            )
        )

    trainer = Trainer(
        model=model,
        args=trainer_args(TrainingArguments, tmp_path),
        data_collator=Collator(tokenizer.pad_token_id),
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    result = trainer.train()
    assert result.global_step == 6
    first, last = first_and_last_loss(trainer)
    assert last < first
    scores = trainer.evaluate()
    # the Trainer's metrics == our own forward pass over the validation split, scored the same way
    batch = validation_batch(features, tokenizer)
    model.eval()
    with torch.no_grad():
        output = model(**batch)
    ours = compute_metrics(
        type("Prediction", (), {"predictions": output.logits.numpy(), "label_ids": batch["labels"].numpy()})
    )
    assert scores["eval_accuracy"] == pytest.approx(ours["accuracy"])
    assert scores["eval_loss"] == pytest.approx(output.loss.item(), rel=1e-4)


GA_ROWS = {
    "g2p": ("train.tsv", "source\ttarget\n" + "".join(f"{w}\t{' '.join(w.upper())}\n" for w in ["cab", "bead"] * 8)),
    **ROWS,
}


@pytest.mark.parametrize("task,lm_loss", [("g2p", "logits"), ("g2p", "fused")] + [(task, "logits") for task in ROWS])
def test_gradient_accumulation_under_the_trainer_equals_one_big_batch(tmp_path, task, lm_loss):
    """Batches of 4 accumulated twice == batches of 8, under plain SGD (whose step is linear in the gradient):
    the token-level heads divide their summed loss by the Trainer's num_items_in_batch, and the sequence head
    leaves the scaling to the Trainer (accepts_loss_kwargs = False). Labelled tokens differ between micro-batches,
    so a mean per micro-batch would weigh them wrongly, and an unscaled one would double the step."""
    name, rows = GA_ROWS[task]
    data, tokenizer, features, model = prepare(tmp_path, task, rows, name)
    model.config.lm_loss = lm_loss
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trained = {}
    for batch, accumulation in ((8, 1), (4, 2)):
        model.load_state_dict(start)
        args = trainer_args(
            TrainingArguments,
            tmp_path / f"b{batch}",
            max_steps=2,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            optim="sgd",
            learning_rate=1.0,
            max_grad_norm=0.0,
            weight_decay=0.0,
            lr_scheduler_type="constant",
        )
        Trainer(
            model=model, args=args, data_collator=Collator(tokenizer.pad_token_id), train_dataset=features["train"]
        ).train()
        trained[batch] = {k: v.clone() for k, v in model.state_dict().items()}
    moved = max((trained[8][k] - start[k]).abs().max() for k in start)
    assert moved > 1e-2  # the steps are large enough to tell a doubled one apart
    for k in start:
        torch.testing.assert_close(trained[4][k], trained[8][k], atol=1e-5, rtol=1e-4, msg=k)
