"""Score a split: the task's predictions (generate, or an argmax) against its references, with its metric.

Used by the training loop (validation, test) and by `scratchformer evaluate` on a saved folder."""

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .data import Collator, eval_batches, input_column
from .tasks import Task


@torch.no_grad()
def evaluate(
    model, tokenizer, task: Task, features, raw, accelerator=None, batch_size=256, label_list=None, desc="eval"
) -> tuple[dict, list]:
    """(scores, with the mean cross-entropy as "loss"; predictions in row order).

    Each process takes every num_processes-th batch of length-sorted rows; predictions are gathered before
    scoring. generate() keeps processes in step itself when the model is sharded (FSDP, ZeRO-3: synced_gpus)."""
    unwrapped = accelerator.unwrap_model(model) if accelerator else model
    was_training = unwrapped.training
    unwrapped.eval()
    device = accelerator.device if accelerator else unwrapped.device
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    collate = Collator(tokenizer.pad_token_id)
    columns = {name: features[name][:] for name in features.column_names}  # inputs, labels (and a graph's)
    input_ids, labels = columns[input_column(features)], columns["labels"]
    everyone = eval_batches([len(x) for x in input_ids], batch_size)
    batches = [(rows, True) for rows in everyone[rank::world]]
    # every process runs as many batches (a sharded model's forward is a collective): one short of the
    # others repeats a batch and drops its results
    batches += [(everyone[0], False)] * (-(-len(everyone) // world) - len(batches))
    results, loss_sum, loss_count = [], 0.0, 0
    main = accelerator is None or accelerator.is_main_process
    for rows, counted in tqdm(batches, desc=desc, disable=not main or len(batches) < 2, leave=False):
        batch = collate([{name: column[i] for name, column in columns.items()} for i in rows])
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = unwrapped(**batch)
        predictions = task.batch_predictions(unwrapped, batch, outputs, tokenizer, label_list)
        if counted:
            loss_sum += outputs.loss.item() * len(rows)
            loss_count += len(rows)
            results.extend(zip(rows, predictions))
    if world > 1:
        results = gather_object(results)
        loss_sum, loss_count = accelerator.reduce(torch.tensor([loss_sum, loss_count], device=device), "sum").tolist()
    results.sort(key=lambda r: r[0])
    order = [i for i, _ in results]
    predictions = [p for _, p in results]
    scores = task.metric().compute(predictions=predictions, references=task.references(raw, labels, order, label_list))
    scores["loss"] = loss_sum / max(loss_count, 1)
    unwrapped.train(was_training)
    return scores, predictions


__all__ = ["evaluate"]
