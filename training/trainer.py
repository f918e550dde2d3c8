"""The training loop, top to bottom: data -> tokenizer -> model -> optimiser -> loop -> test -> release.

`Accelerator` owns the device, mixed precision, gradient accumulation and distribution, so the same code runs
on a CPU, one GPU, or many through `accelerate launch` (DDP; FSDP/DeepSpeed from an accelerate config file).
What differs between tasks comes from the task's record (tasks.py); what is written where, and when, is in
checkpoints.py.

Resume is exact: a checkpoint holds the model, optimiser, scheduler and RNG states plus the TrainerState (step,
epoch, batches already seen this epoch, best metric, history). The batch order comes from a sampler seeded by
(seed, epoch), and `skip_first_batches` drops the batches already seen, so a stopped and resumed run ends with
the same weights as an uninterrupted one.
"""

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, is_tensorboard_available, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer

from .args import DataArguments, ModelArguments, TrainArguments, check_args, to_dict
from .bf16_weights import Bf16Weights
from .building import build_model, generation_config, lm_loss_for
from .checkpoints import (
    TrainerState,
    average_weights,
    intact_checkpoint,
    save_checkpoint,
    save_model_in_place,
    write_atomic,
)
from .data import (
    Collator,
    LengthGroupedBatchSampler,
    load_task,
    row_lengths,
    steps_per_epoch,
    tokenize,
    train_tokenizer,
    vector_width,
)
from .evaluation import evaluate
from .export import CardInfo
from .hub import check_repo_id, push_to_hub, resolve_token
from .noising import Noise
from .optim import make_optimizer
from .tracking import JSONLinesTracker, flat_hparams, plot_history

logger = logging.getLogger(__name__)


class StopReason(Enum):
    MAX_STEPS = "max_steps reached"
    EARLY_STOPPING = "early stopping"
    TIME_BUDGET = "max_train_minutes reached"
    PAUSED = "stop_after_steps reached"  # the run ends without a release; --resume continues it


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    detail: str

    def __str__(self):
        return self.detail


NATIVE_BF16 = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs whose matmuls run bf16 natively


def cpu_bf16_flags() -> list[str]:
    """The native-bf16 flags this CPU has (none where /proc/cpuinfo is absent)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return [flag for flag in NATIVE_BF16 if flag in flags]


AUTOCAST_PAYS_FROM = 256  # d_model from which bf16 autocast trained faster than fp32 on every CPU measured


def bf16_advice(
    mixed_precision: str, device_type: str, flags: list[str], d_model: int, wait_policy: str | None = None, threads=1
) -> tuple[int, str] | None:
    """(log level, message) about bf16 on a CPU, or None; the figures are the README's (Performance).

    bf16 weights with fp32 masters trained bench.py's d_model 256 model 2.08x faster than fp32 on an Intel Xeon
    with AMX and 2.26x on an AMD EPYC with AVX512-BF16 (fused loss, both); the default job (d_model 128) 1.02x and
    1.65x. bf16 autocast trained the default job at 0.92x fp32's tokens/s on the AMX host (its per-op casts cost
    more than the small matmuls gain) and 1.18x on the AMD one. Without native bf16 it is emulated. The trainer
    says so; it does not switch: the precision changes the numbers a run produces, so it stays the user's choice.
    ``wait_policy`` (OMP_WAIT_POLICY) and ``threads`` (torch's): under PASSIVE every parallel region wakes sleeping
    threads, a cost bf16 does not shrink (benchmarks/bf16_threads.py), which the trainer mentions when bf16 is on."""
    if device_type != "cpu":
        return None
    if mixed_precision != "no" and not flags:
        return logging.WARNING, (
            f"--mixed_precision {mixed_precision} on a CPU without native bf16 ({' or '.join(NATIVE_BF16)} absent): "
            "16-bit math is emulated and usually slower than fp32"
        )
    if mixed_precision == "bf16" and d_model < AUTOCAST_PAYS_FROM:
        return logging.WARNING, (
            f"--mixed_precision bf16 at d_model={d_model}: autocast's casts cost most in small models; the default "
            "job (d_model 128) trained at 0.92x fp32's tokens/s that way on an AMX CPU (1.18x on an AVX512-BF16 "
            "one), and at 1.02x (1.65x) with --mixed_precision bf16-weights"
        )
    if mixed_precision in ("bf16", "bf16-weights") and (wait_policy or "").upper() == "PASSIVE" and threads > 1:
        return logging.INFO, (
            f"OMP_WAIT_POLICY=PASSIVE with {threads} threads: every parallel region wakes sleeping threads, a cost "
            "bf16 does not shrink; bench.py's d_model 256 model trained bf16-weights 2.01-2.17x fp32 that way on a "
            "2-core AMX CPU and 2.24-2.36x with torch's default spinning threads (benchmarks/bf16_threads.py): "
            "leave it unset when this run has the CPU to itself"
        )
    if mixed_precision == "no" and flags:
        return logging.INFO, (
            f"this CPU computes bf16 natively ({', '.join(flags)}): --mixed_precision bf16-weights trained "
            "benchmarks/bench.py's d_model 256 model 2.08x faster than fp32 on an AMX CPU and 2.26x on an "
            "AVX512-BF16 one, the default job (d_model 128) 1.02x and 1.65x; this run uses fp32"
        )
    return None


def load_report(model, info: dict, path: str, saved_config) -> dict:
    """Which of the model's weights came from `path` (loaded), which are new, which of the file's were dropped."""
    new, dropped = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    mismatched = sorted(str(key) for key in info.get("mismatched_keys", ()))
    weights = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}  # tied: once
    loaded = sorted(weights & set(model.state_dict()) - set(new) - set(mismatched))
    return {
        "from": path,
        "saved_head": (saved_config.architectures or ["?"])[0],
        "head": type(model).__name__,
        "loaded": loaded,
        "new": new,
        "dropped": dropped,
        "mismatched": mismatched,
    }


def format_load_report(report: dict) -> str:
    """One line per kind, the weights grouped by module (``model.encoder.layers.*: 96``)."""

    def groups(keys):
        counts = {}
        for key in keys:
            parts = key.split(".")
            prefix = ".".join(parts[: parts.index("layers") + 1] if "layers" in parts else parts[:-1])
            counts[prefix] = counts.get(prefix, 0) + 1
        return ", ".join(f"{prefix}.* ({n})" for prefix, n in counts.items()) or "none"

    return f"{report['head']} from {report['from']} ({report['saved_head']}):\n" + "\n".join(
        f"  {kind:<10} {len(report[kind]):>4} tensors: {groups(report[kind])}"
        for kind in ("loaded", "new", "dropped", "mismatched")
    )


def subset(n: int, k: int, seed: int) -> list[int]:
    """k of range(n), drawn with a seeded generator, in their original order (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


class Trainer:
    """One run: `Trainer(model_args, data_args, train_args).train()` returns the final metrics."""

    def __init__(self, model_args: ModelArguments, data_args: DataArguments, args: TrainArguments):
        check_args(model_args, data_args, args)
        if args.push_to_hub:  # a bad repo id or a missing token fails now, not after training
            check_repo_id(args.push_to_hub)
            resolve_token()
        self.model_args, self.data_args, self.args = model_args, data_args, args
        self.started = time.time()
        self.out = Path(args.output_dir)
        self.log_file = JSONLinesTracker(self.out / "log.jsonl")
        trackers = [self.log_file] + (
            ["tensorboard"] if "tensorboard" in args.report_to and is_tensorboard_available() else []
        )
        self.bf16_weights = args.mixed_precision == "bf16-weights"  # not autocast: bf16_weights.py, in the loop
        self.accelerator = Accelerator(
            mixed_precision="no" if self.bf16_weights else args.mixed_precision,
            log_with=trackers,
            project_dir=str(self.out),
            gradient_accumulation_steps=args.gradient_accumulation_steps,
        )
        self.main = self.accelerator.is_main_process
        if self.bf16_weights and self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            raise ValueError(
                f"--mixed_precision bf16-weights under {self.accelerator.distributed_type.value}: it has its own bf16 "
                "mode with fp32 master weights; use --mixed_precision bf16 (set in the accelerate config)"
            )
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
        logging.getLogger("scratchformer").setLevel(logging.INFO if self.main else logging.WARNING)
        advice = bf16_advice(
            args.mixed_precision,
            self.accelerator.device.type,
            cpu_bf16_flags(),
            model_args.d_model,
            os.environ.get("OMP_WAIT_POLICY"),
            torch.get_num_threads(),
        )
        if advice and self.main:
            logger.log(*advice)
        set_seed(args.seed)
        self.resume_from = intact_checkpoint(self.out) if args.resume else None
        if args.resume and self.resume_from is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.out / 'checkpoints'}")
        self.state = TrainerState()

        self.data = load_task(data_args, args.seed)
        self.task = self.data.task
        self.metric_name = args.metric_for_best or self.task.best_metric
        self.tokenizer, self.model = self.tokenizer_and_model()
        self.features = self.tokenized()
        if self.main:
            write_atomic(self.out / "training_args.json", json.dumps(to_dict(model_args, data_args, args), indent=2))
            logger.info(
                "task %s: %s; %s parameters",
                self.task.name,
                {k: len(v) for k, v in self.data.raw.items()},
                f"{self.model.num_parameters():,}",
            )
            if self.task.seq2seq:
                config = self.model.config
                logger.info(
                    "lm_loss %s (--lm_loss %s, %d tokens)", config.lm_loss, model_args.lm_loss, config.vocab_size
                )

    # ------------------------------------------------------------------------------ data, tokenizer, model
    def tokenizer_and_model(self):
        """A new tokenizer and model, or those of --model_name_or_path, or, on --resume, this run's tokenizer.

        The tokenizer is saved to output_dir once, by the main process; a new one is trained there only (the
        `tokenizers` trainers order tied symbols differently from run to run) and every other process loads it."""
        model_args, data, accelerator = self.model_args, self.data, self.accelerator
        if self.resume_from is not None:
            tokenizer = AutoTokenizer.from_pretrained(self.out)
        else:
            with accelerator.main_process_first():
                if self.main:
                    tokenizer = (
                        AutoTokenizer.from_pretrained(model_args.model_name_or_path)
                        if model_args.model_name_or_path
                        else train_tokenizer(data, self.data_args, model_args.max_position_embeddings)
                    )
                    self.out.mkdir(parents=True, exist_ok=True)
                    tokenizer.save_pretrained(self.out)
                else:
                    tokenizer = AutoTokenizer.from_pretrained(self.out)
        if not model_args.model_name_or_path:
            width = vector_width(data.raw["train"])
            return tokenizer, build_model(self.task, tokenizer, data.label_list, model_args, width)
        return tokenizer, self.pretrained_model()

    def pretrained_model(self):
        """The task's head from --model_name_or_path (a folder or a Hub id), whatever head saved it: the weights
        both have are loaded, the head's own are new, the saved head's are dropped (load_report.json says which).

        The architecture and its dropout and label smoothing are the saved config's (as from_pretrained keeps
        them; the ModelArguments fields are for new models), lm_loss this run's (like attn_implementation). A head of another kind gets this data's labels; a seq2seq model from an encoder gets a new decoder of
        --decoder_layers layers; an encoder-only head keeps no decoder."""
        model_args, data, path = self.model_args, self.data, self.model_args.model_name_or_path
        saved = AutoConfig.from_pretrained(path)
        same_head = (saved.architectures or [None])[0] == self.task.model_class_name
        # how the loss is computed, not the model: this run's choice
        overrides = {"lm_loss": lm_loss_for(model_args.lm_loss, saved.vocab_size)}
        if not self.task.seq2seq:
            overrides["decoder_layers"] = 0
        elif not saved.decoder_layers:
            overrides["decoder_layers"] = model_args.decoder_layers
        if data.label_list and not same_head:
            overrides |= dict(
                num_labels=len(data.label_list),
                id2label=dict(enumerate(data.label_list)),
                label2id={label: i for i, label in enumerate(data.label_list)},
            )
        model, info = self.task.model_class.from_pretrained(
            path, attn_implementation=model_args.attn_implementation, output_loading_info=True, **overrides
        )
        if data.label_list and same_head:  # keep the saved model's label ids
            saved_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
            if set(data.label_list) - set(saved_labels):
                raise ValueError(
                    f"labels {sorted(set(data.label_list) - set(saved_labels))} are not among the labels of "
                    f"{path}: {saved_labels}"
                )
            data.label_list = saved_labels
        report = load_report(model, info, path, saved)
        if self.main:
            write_atomic(self.out / "load_report.json", json.dumps(report, indent=2))
            logger.info("%s", format_load_report(report))
        return model

    def tokenized(self):
        """Token ids of every split, within the model's limits; the validation subset; the generation config."""
        config, data_args = self.model.config, self.data_args
        max_source = data_args.max_source_length or config.max_position_embeddings
        max_target = data_args.max_target_length or config.max_position_embeddings
        for name, value in (("max_source_length", max_source), ("max_target_length", max_target)):
            if value > config.max_position_embeddings and config.position_encoding in ("learned", "sinusoidal"):
                raise ValueError(
                    f"{name}={value} exceeds the model's max_position_embeddings={config.max_position_embeddings}"
                )
        self.noise = Noise.of(data_args, self.args.seed)
        features = tokenize(
            self.data,
            self.tokenizer,
            max_source,
            max_target,
            data_args.too_long,
            data_args.label_all_subwords,
            self.noise,
        )
        if data_args.max_eval_samples:  # a seeded random subset (the G2P splits are sorted alphabetically)
            keep = subset(len(features["validation"]), data_args.max_eval_samples, self.args.seed)
            features["validation"] = features["validation"].select(keep)
            self.data.raw["validation"] = self.data.raw["validation"].select(keep)
        if self.task.seq2seq:
            longest = max(len(y) for y in features["train"]["labels"][:])
            self.model.generation_config = generation_config(
                self.model, self.args.num_beams, min(max_target, 2 * longest + 5), self.args.length_penalty
            )
        return features

    # ----------------------------------------------------------------------------------------- the loop
    def train(self) -> dict:
        """Train until a stop reason, then test the best model and write the release."""
        args, accelerator = self.args, self.accelerator
        self.sampler = LengthGroupedBatchSampler(
            row_lengths(self.features["train"], self.task.seq2seq),
            args.batch_size,
            args.batch_tokens or None,
            seed=args.seed,
            num_processes=accelerator.num_processes,
        )
        self.collator = self.task.collator(self.tokenizer, self.noise, Collator(self.tokenizer.pad_token_id))
        loader = DataLoader(
            self.features["train"],
            batch_sampler=self.sampler,
            collate_fn=self.collator,
            num_workers=args.num_workers,
            generator=torch.Generator().manual_seed(args.seed),
        )
        optimizer, self.scheduler = make_optimizer(self.model, args)
        self.model, self.optimizer, loader = accelerator.prepare(self.model, optimizer, loader)
        accelerator.register_for_checkpointing(self.scheduler)  # stepped by us once per optimiser step
        if self.resume_from is not None:
            accelerator.load_state(str(self.resume_from))
            self.state = TrainerState.load(self.resume_from)
            if self.main:
                logger.info(
                    "resumed from %s at step %d (epoch %d, batch %d)",
                    self.resume_from,
                    self.state.step,
                    self.state.epoch,
                    self.state.batch_in_epoch,
                )
                self.log_file.truncate_after(self.state.step)
        # what the training forward and backward run on: the model, or its bf16 copy (bf16_weights.py)
        self.compute = Bf16Weights(accelerator.unwrap_model(self.model)) if self.bf16_weights else self.model
        if self.bf16_weights:
            self.optimizer.optimizer.tie(self.compute)  # Bf16AdamW (make_optimizer), inside accelerate's wrapper
        accelerator.init_trackers("tensorboard", config=flat_hparams(self.model_args, self.data_args, args))

        stop = self.loop(loader)
        if self.main:
            logger.info("training stopped at step %d after %.1f min: %s", self.state.step, self.train_minutes, stop)
        if stop.reason is StopReason.PAUSED:
            accelerator.end_training()
            return {"step": self.state.step, "stopped": str(stop)}
        if not self.evaluated_at(self.state.step):
            self.validate()  # the model as it ended competes for best too
        if args.average_checkpoints:
            self.validate_average()
        results = self.finish(stop)
        accelerator.end_training()
        return results

    def loop(self, loader) -> Stop:
        args, accelerator, state = self.args, self.accelerator, self.state
        self.model.train()
        self.compute.train()
        bar = tqdm(total=args.max_steps, initial=state.step, disable=not self.main, desc="train", dynamic_ncols=True)
        self.window = torch.zeros(3, device=accelerator.device)  # loss * rows, rows, tokens since the last log
        self.window_start = self.loop_start = time.time()
        self.train_minutes = 0.0
        if state.step >= args.max_steps:  # resumed from the last checkpoint of a run that had ended
            bar.close()
            return Stop(StopReason.MAX_STEPS, "max_steps reached")
        while True:
            self.sampler.set_epoch(state.epoch)
            self.collator.set_epoch(state.epoch)
            batches = accelerator.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
            for batch in batches:
                if not self.training_step(batch):
                    continue  # gradients accumulate
                state.step += 1
                bar.update(1)
                if state.step % args.log_every == 0 or state.step == args.max_steps:
                    self.log_training(bar)
                if state.step % args.eval_every == 0 or state.step == args.max_steps:
                    self.validate()
                stop = self.stop()
                if state.step % args.save_every == 0 or stop:
                    save_checkpoint(accelerator, self.out, state, args.save_total_limit)
                if stop:
                    bar.close()
                    self.train_minutes = (time.time() - self.loop_start) / 60
                    return stop
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    def training_step(self, batch) -> bool:
        """Forward, backward and (when the accumulation is complete) an optimiser step; True after a step.

        A NaN/inf loss on any process stops the run (nonfinite_loss="stop") or drops the batch, with what it had
        accumulated, from the step on every process ("skip"; counted in the state)."""
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            loss = self.compute(**batch).loss
            if self.nonfinite(loss):
                self.optimizer.zero_grad()
                self.state.batch_in_epoch += 1
                self.state.skipped_batches += 1
                return False
            accelerator.backward(loss)
            if self.bf16_weights:  # Bf16AdamW's step reads the last bf16 gradients, clips and refreshes the copy
                if not accelerator.sync_gradients or accelerator.num_processes > 1:
                    self.compute.gradients_to_master()  # summed in fp32 over micro-batches; averaged in fp32
                if accelerator.sync_gradients:
                    self.compute.average_gradients(accelerator)
            elif accelerator.sync_gradients and self.args.max_grad_norm:
                accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            self.optimizer.step()
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                self.scheduler.step()
            self.optimizer.zero_grad()
        self.state.batch_in_epoch += 1
        rows, real = batch["attention_mask"].shape[0], batch["attention_mask"]
        if real.dim() == 4:  # a graph's (b, 1, n, n) mask (graphs.py): its diagonal marks the real tokens
            real = real.diagonal(dim1=-2, dim2=-1)
        tokens = real.sum() + (batch["labels"] != -100).sum() * self.task.seq2seq
        self.window += torch.stack(
            [loss.detach().float() * rows, torch.tensor(rows, device=self.window.device), tokens.float()]
        )
        return accelerator.sync_gradients

    def nonfinite(self, loss) -> bool:
        """Whether the loss is NaN/inf on any process (all processes agree); raises under nonfinite_loss="stop"."""
        flag = torch.tensor(float(not torch.isfinite(loss.detach()).item()), device=self.accelerator.device)
        if self.accelerator.reduce(flag, "sum").item() == 0:
            return False
        where = f"step {self.state.step + 1} (epoch {self.state.epoch}, batch {self.state.batch_in_epoch} of it)"
        if self.args.nonfinite_loss == "skip":
            logger.warning(
                "the training loss is %s at %s: batch skipped (%d so far)",
                loss.item(),
                where,
                self.state.skipped_batches + 1,
            )
            return True
        checkpoint = intact_checkpoint(self.out) if (self.out / "checkpoints").is_dir() else None
        raise FloatingPointError(
            f"the training loss is {loss.item()} at {where}; nothing was saved from this step: "
            f"{'the checkpoint ' + checkpoint.name if checkpoint else 'no checkpoint yet'} and the best model so far "
            f"in {self.out} are intact. Lower the learning rate (or use fp32/bf16 instead of fp16), or pass "
            "--nonfinite_loss skip to skip such batches"
        )

    def stop(self) -> Stop | None:
        """Why the loop ends after this step, if it does. Every process decides alike (the clock: the main one's)."""
        args, step = self.args, self.state.step
        if args.early_stopping_patience and self.state.evals_without_improvement >= args.early_stopping_patience:
            return Stop(
                StopReason.EARLY_STOPPING,
                f"early stopping: no better {self.metric_name} in {args.early_stopping_patience} evaluations",
            )
        if args.stop_after_steps and args.stop_after_steps <= step < args.max_steps:
            return Stop(StopReason.PAUSED, f"stop_after_steps={args.stop_after_steps}")
        if args.max_train_minutes:
            late = float(self.main and time.time() - self.loop_start > 60 * args.max_train_minutes)
            if self.accelerator.reduce(torch.tensor(late, device=self.accelerator.device), "sum").item() > 0:
                return Stop(StopReason.TIME_BUDGET, f"max_train_minutes={args.max_train_minutes} reached")
        if step >= args.max_steps:
            return Stop(StopReason.MAX_STEPS, "max_steps reached")
        return None

    # ------------------------------------------------------------------------------------ logs and evals
    def record(self, values: dict):
        """One history entry at this step, to the state (which checkpoints keep) and to every tracker."""
        self.state.history.append({"step": self.state.step, **values})
        self.accelerator.log(values, step=self.state.step)

    def log_training(self, bar):
        loss_sum, row_count, token_count = self.accelerator.reduce(self.window, "sum").tolist()
        elapsed = time.time() - self.window_start
        values = {
            "train/loss": loss_sum / max(row_count, 1),
            "train/lr": self.scheduler.get_last_lr()[0],
            "train/tokens_per_second": token_count / max(elapsed, 1e-9),
            "train/epoch": self.state.epoch,
        }
        self.record(values)
        bar.set_postfix(
            loss=f"{values['train/loss']:.3f}",
            lr=f"{values['train/lr']:.2e}",
            tok_s=f"{values['train/tokens_per_second']:.0f}",
        )
        self.window.zero_()
        self.window_start = time.time()

    def evaluated_at(self, step: int) -> bool:
        return any(h["step"] == step and f"eval/{self.metric_name}" in h for h in self.state.history)

    def validate_average(self):
        """The mean of the last average_checkpoints checkpoints' weights competes for best too; if it loses, the
        model in memory goes back to the trained weights."""
        model = self.accelerator.unwrap_model(self.model)
        trained = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        averaged, names = average_weights(self.out, self.args.average_checkpoints)
        missing, unexpected = model.load_state_dict(averaged, strict=False)
        tied = {name for name in trained if name not in averaged}  # saved once, under the tensor they share
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"averaged checkpoints do not fit the model: missing {missing}, unexpected {unexpected}")
        improved = self.validate("eval_average")
        if not improved:
            model.load_state_dict(trained)
        self.average = {"checkpoints": names, "kept": improved}
        if self.main:
            logger.info(
                "average of %s: %s", ", ".join(names), "the best model" if improved else "not better; discarded"
            )

    def validate(self, prefix: str = "eval") -> bool:
        """Score the validation split (recorded as prefix/metric); on a new best, the model at the top of output_dir is
        replaced by this one. True on a new best."""
        state = self.state
        scores, _ = evaluate(
            self.model,
            self.tokenizer,
            self.task,
            self.features["validation"],
            self.data.raw["validation"],
            self.accelerator,
            self.args.eval_batch_size,
            self.data.label_list,
            desc=f"validation @ {state.step}",
        )
        self.record({f"{prefix}/{k}": v for k, v in scores.items()})
        improved = self.task.is_better(self.metric_name, scores[self.metric_name], state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = (
                scores[self.metric_name],
                state.step,
                0,
            )
            weights = self.accelerator.get_state_dict(self.model)  # on every process: FSDP/DeepSpeed gather shards
            if self.main:
                save_model_in_place(self.accelerator.unwrap_model(self.model), self.out, weights)
        else:
            state.evals_without_improvement += 1
        if self.main:
            tqdm.write(
                f"step {state.step}: validation{'' if prefix == 'eval' else ' (' + prefix + ')'} "
                + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                + (" (best)" if improved else "")
            )
        return improved

    # ------------------------------------------------------------------------------------ test, release
    def finish(self, stop: Stop) -> dict:
        """Test the best model, then write the results next to it: the release is complete."""
        accelerator, args, task = self.accelerator, self.args, self.task
        accelerator.wait_for_everyone()
        if self.state.best_step == self.state.step:  # the model in memory is the best one
            final = accelerator.unwrap_model(self.model)
        else:  # an earlier one: the weights at the top of output_dir
            final = task.model_class.from_pretrained(self.out, attn_implementation=self.model_args.attn_implementation)
            final.to(accelerator.device)
        split = "test" if "test" in self.features else "validation"
        features, raw = self.features[split], self.data.raw[split]
        if self.data_args.max_test_samples and split == "test":
            keep = subset(len(features), self.data_args.max_test_samples, args.seed)
            features, raw = features.select(keep), raw.select(keep)
        scores, predictions = evaluate(
            final,
            self.tokenizer,
            task,
            features,
            raw,
            accelerator,
            args.eval_batch_size,
            self.data.label_list,
            desc=split,
        )
        results = {
            split: {**scores, "rows": len(features)},
            "validation_best": {self.metric_name: self.state.best_metric, "step": self.state.best_step},
            "train": {
                "steps": self.state.step,
                "epochs": self.state.step / steps_per_epoch(self.sampler, args.gradient_accumulation_steps),
                "train_minutes": self.train_minutes,
                "total_minutes": (time.time() - self.started) / 60,
                "stop_reason": str(stop),
                "skipped_batches": self.state.skipped_batches,
                "parameters": final.num_parameters(),
            },
            **({"average": self.average} if self.args.average_checkpoints else {}),
        }
        if not self.main:
            return results
        examples = [task.example(raw[i], prediction, self.data.label_list) for i, prediction in enumerate(predictions)]
        card = CardInfo.from_run(
            task, self.model_args, self.data_args, args, split, scores, self.state.history, examples
        )
        write_atomic(self.out / f"{split}_predictions.jsonl", "".join(json.dumps(e) + "\n" for e in examples))
        write_atomic(self.out / "card_info.json", card.to_json())
        plot_history(self.state.history, self.out / "loss_curve.png")
        write_atomic(self.out / "all_results.json", json.dumps(results, indent=2))  # last: the release is complete
        every = max(1, len(examples) // max(1, args.num_examples))
        self.report(split, scores, examples[::every][: args.num_examples], results)
        if args.push_to_hub:
            commit = push_to_hub(
                self.out,
                args.push_to_hub,
                private=args.hub_private,
                loaded=(final, self.tokenizer),
                info=card,
                commit_message=f"scratchformer {task.name}: {split} {scores}",
            )
            print(f"pushed to {commit.commit_url}")
        return results

    def report(self, split, scores, examples, results):
        print(f"\n== {split} ({results[split]['rows']} rows) ==")
        print(
            "  "
            + "   ".join(
                f"{k.upper() if k in ('wer', 'per') else k}: {100 * v:.2f}%"
                if k in ("wer", "per", "accuracy", "macro_f1", "f1")
                else f"{k}: {v:.4f}"
                for k, v in scores.items()
            )
        )
        for example in examples:
            print("  " + self.task.format_example(example))
        print(
            f"  trained {results['train']['steps']} steps in {results['train']['train_minutes']:.1f} min; "
            f"total {results['train']['total_minutes']:.1f} min; saved to {self.out}"
        )


def train(model_args: ModelArguments, data_args: DataArguments, args: TrainArguments) -> dict:
    """Train, evaluate on test, save everything to args.output_dir; return the final metrics."""
    return Trainer(model_args, data_args, args).train()


__all__ = ["Stop", "StopReason", "Trainer", "train"]
