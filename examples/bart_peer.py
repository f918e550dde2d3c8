"""A same-budget peer: transformers' BartForConditionalGeneration trained from scratch by transformers' own
Seq2SeqTrainer, on our data and tokenizer, at our preset's model size and wall time, scored by our metric.

    python examples/bart_peer.py --preset g014b2b --data_dir ../shared/data/cmudict-g2p-split/g014b2b \\
        --max_train_minutes 60 --output_dir outputs/bart-peer

It shows what our recipe and model add over what a user would do with the library alone: the data, tokenizer and
scoring are ours (so only the model and the loop differ); the model is BART's (learned positions, pre-LayerNorm
of the embeddings, GELU) at our preset's d_model, layers, heads, FFN width and dropout; the loop is the
Seq2SeqTrainer with its usual settings (length-grouped batches, AdamW, the preset's learning rate, warmup and
label smoothing, linear decay), stopped by the preset's step count or the wall-time budget, whichever comes
first. The best checkpoint by validation loss is scored on test with greedy or beam search like ours.
"""

import argparse
import inspect
import json
import time
from pathlib import Path

from transformers import (
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)

from scratchformer.training.args import (
    DataArguments,
    ModelArguments,
    TrainArguments,
    config_defaults,
    field_names,
    from_flat,
)
from scratchformer.training.building import generation_config
from scratchformer.training.data import load_task, tokenize, train_tokenizer
from scratchformer.training.trainer import subset


class WallClock(TrainerCallback):
    """Stop training after `minutes` of it (the budget our trainer's --max_train_minutes gives)."""

    def __init__(self, minutes: float | None):
        self.minutes, self.start = minutes, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.minutes and time.time() - self.start > 60 * self.minutes:
            control.should_training_stop = True


def length_grouped() -> dict:
    """Seq2SeqTrainingArguments' length-grouped batches: `train_sampling_strategy` in recent transformers 5
    releases, `group_by_length` before."""
    if "train_sampling_strategy" in inspect.signature(Seq2SeqTrainingArguments).parameters:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def predict_in_order(trainer: Seq2SeqTrainer, dataset):
    """trainer.predict(dataset), its rows in dataset order. With length-grouped batches transformers 5 groups the
    evaluation rows by length too (`Trainer._get_eval_sampler`), and predict() returns them in that order with no
    index to undo it; so the grouping is off while predicting."""
    ((name, grouped),) = length_grouped().items()
    setattr(trainer.args, name, "random" if name == "train_sampling_strategy" else False)
    try:
        return trainer.predict(dataset)
    finally:
        setattr(trainer.args, name, grouped)


def arguments(preset: str, overrides: dict) -> tuple[ModelArguments, DataArguments, TrainArguments]:
    """The preset's arguments, with the flags given here (None: not given) over them."""
    given = {k: v for k, v in overrides.items() if v is not None and k in field_names()}
    return from_flat(config_defaults(preset) | given)


def bart(model_args: ModelArguments, tokenizer, max_positions: int) -> BartForConditionalGeneration:
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=model_args.d_model,
        encoder_layers=model_args.encoder_layers,
        decoder_layers=model_args.decoder_layers,
        encoder_attention_heads=model_args.attention_heads,
        decoder_attention_heads=model_args.attention_heads,
        encoder_ffn_dim=model_args.ffn_dim,
        decoder_ffn_dim=model_args.ffn_dim,
        dropout=model_args.dropout,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(config)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="g014b2b", help="our preset whose size and budget the peer takes")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--max_train_minutes", type=float, default=None, help="default: the preset's")
    for name in ("data_dir", "train_file", "validation_file", "test_file"):
        parser.add_argument(f"--{name}", default=None)
    parser.add_argument("--max_steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--max_test_samples", type=int, default=None)
    parser.add_argument(
        "--test_only", action="store_true", help="score the best checkpoint of a finished run in --output_dir again"
    )
    args = parser.parse_args(argv)
    model_args, data_args, train_args = arguments(args.preset, vars(args) | {"output_dir": str(args.output_dir)})
    data = load_task(data_args, train_args.seed)
    limit = model_args.max_position_embeddings
    if args.test_only:  # the best checkpoint of the run in --output_dir: its tokenizer and weights
        state = json.loads((args.output_dir / "trainer_state.json").read_text())
        best = args.output_dir / Path(state["best_model_checkpoint"]).name
        tokenizer = AutoTokenizer.from_pretrained(best)
        model = BartForConditionalGeneration.from_pretrained(best)
    else:
        tokenizer = train_tokenizer(data, data_args, limit)
        model = bart(model_args, tokenizer, limit)
    features = tokenize(data, tokenizer, limit, limit, data_args.too_long)
    lengths = [len(x) + len(y) for x, y in zip(features["train"]["input_ids"][:], features["train"]["labels"][:])]
    rows_per_batch = max(1, train_args.batch_tokens // max(1, round(sum(lengths) / len(lengths))))  # the same tokens
    longest = max(len(y) for y in features["train"]["labels"][:])
    model.generation_config = generation_config(model, train_args.num_beams, 2 * longest + 5, train_args.length_penalty)
    hf_args = Seq2SeqTrainingArguments(
        output_dir=str(args.output_dir),
        max_steps=train_args.max_steps,
        per_device_train_batch_size=rows_per_batch,
        per_device_eval_batch_size=train_args.eval_batch_size,
        learning_rate=train_args.learning_rate,
        warmup_steps=train_args.warmup_steps,
        weight_decay=train_args.weight_decay,
        adam_beta2=train_args.adam_beta2,
        label_smoothing_factor=model_args.label_smoothing,
        max_grad_norm=train_args.max_grad_norm,
        bf16=train_args.mixed_precision == "bf16",  # the preset's autocast precision
        **length_grouped(),
        eval_strategy="steps",
        eval_steps=train_args.eval_every,
        save_strategy="steps",
        save_steps=train_args.eval_every,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        logging_steps=train_args.log_every,
        predict_with_generate=True,
        report_to="none",
        use_cpu=True,
        seed=train_args.seed,
    )
    validation = features["validation"]
    if data_args.max_eval_samples:  # the same seeded subset as our trainer's (the G2P splits are sorted)
        validation = validation.select(subset(len(validation), data_args.max_eval_samples, train_args.seed))
    trainer = Seq2SeqTrainer(
        model=model,
        args=hf_args,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        train_dataset=features["train"],
        eval_dataset=validation,
        processing_class=tokenizer,
        callbacks=[WallClock(args.max_train_minutes or train_args.max_train_minutes)],
    )
    hf_args.prediction_loss_only = True  # validation: the loss only (generation is for the test score below)
    if args.test_only:  # the finished run's best checkpoint, its training figures as they were
        trained_steps, minutes = (
            state["global_step"],
            json.loads((args.output_dir / "peer_results.json").read_text())["train"]["train_minutes"],
        )
    else:
        start = time.time()
        trained_steps = trainer.train().global_step
        trainer.save_state()  # trainer_state.json: the log history (examples/compare_runs.py draws it)
        minutes = (time.time() - start) / 60
    hf_args.prediction_loss_only = False
    test = features["test"]
    raw = data.raw["test"]
    if args.max_test_samples:
        test, raw = test.select(range(args.max_test_samples)), raw.select(range(args.max_test_samples))
    output = predict_in_order(trainer, test)
    ids = [[t for t in row if t >= 0] for row in output.predictions]  # the Trainer pads with -100
    predictions = tokenizer.batch_decode(ids, skip_special_tokens=True)
    scores = data.task.metric().compute(predictions=predictions, references=raw["references"][:])
    results = {
        "model": "BartForConditionalGeneration (transformers), Seq2SeqTrainer",
        "preset": args.preset,
        "test": {**scores, "rows": len(test)},
        "train": {"steps": trained_steps, "train_minutes": minutes, "rows_per_batch": rows_per_batch},
        "parameters": model.num_parameters(),
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "peer_results.json").write_text(json.dumps(results, indent=2))
    rows = [{"source": r["source"], "prediction": p, "references": r["references"]} for r, p in zip(raw, predictions)]
    (args.output_dir / "test_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
