"""A fresh model for a task, sized by ModelArguments, its vocabulary and special ids taken from the tokenizer."""

from transformers import GenerationConfig

from scratchformer import ScratchformerConfig

from ..configuration.configuration_scratchformer import LM_LOSSES
from .tasks import Task

LM_LOSS_CHOICES = ("auto", *LM_LOSSES)  # --lm_loss; "auto" resolves to one of config.lm_loss's values
FUSED_LOSS_FROM_VOCAB = 4096  # vocabulary size from which --lm_loss auto takes the fused loss


def lm_loss_for(choice: str, vocab_size: int) -> str:
    """config.lm_loss for --lm_loss ``choice``: "auto" takes "fused" from FUSED_LOSS_FROM_VOCAB tokens on, where the
    (rows, V) logits dominate the head's cost, and "logits" below, where F.cross_entropy's one kernel beats the
    fused loss's blocks. Head + loss, forward + backward, 2048 rows, on the AMX host (README, Performance): fused
    1.75-3.5x faster at V 8000, 0.84-1.9x at 2048, 0.3x at the default job's 72 phonemes."""
    if choice != "auto":
        return choice
    return "fused" if vocab_size >= FUSED_LOSS_FROM_VOCAB else "logits"


def build_model(task: Task, tokenizer, label_list, args, input_features_dim: int | None = None):
    """The task's head on a new ScratchformerConfig (`args`: ModelArguments); the classification heads get
    the labels and no decoder; `input_features_dim`: the width of the vectors it reads, if it reads vectors."""
    labels = {}
    if label_list:
        labels = dict(
            num_labels=len(label_list),
            id2label=dict(enumerate(label_list)),
            label2id={label: i for i, label in enumerate(label_list)},
        )
    config = ScratchformerConfig(
        vocab_size=len(tokenizer),
        d_model=args.d_model,
        encoder_layers=args.encoder_layers,
        decoder_layers=args.decoder_layers if task.seq2seq else 0,
        encoder_attention_heads=args.attention_heads,
        decoder_attention_heads=args.attention_heads,
        encoder_ffn_dim=args.ffn_dim,
        decoder_ffn_dim=args.ffn_dim,
        activation_function=args.activation_function,
        dropout=args.dropout,
        attention_dropout=args.attention_dropout,
        activation_dropout=args.activation_dropout,
        max_position_embeddings=args.max_position_embeddings,
        label_smoothing=args.label_smoothing,
        lm_loss=lm_loss_for(args.lm_loss, len(tokenizer)),
        attention_score=args.attention_score,
        attention_normalizer=args.attention_normalizer,
        attention_pattern=args.attention_pattern,
        attention_window=args.attention_window,
        position_encoding=args.position_encoding,
        norm_placement=args.norm_placement,
        input_features_dim=input_features_dim,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        **labels,
        **task.config_overrides,
    )
    return task.model_class._from_config(config, attn_implementation=args.attn_implementation)


def generation_config(model, num_beams: int, max_new_tokens: int, length_penalty: float = 1.0) -> GenerationConfig:
    """Deterministic decoding (greedy or beam, ranked by log p / length ** length_penalty) with the model's ids."""
    c = model.config
    return GenerationConfig(
        decoder_start_token_id=c.decoder_start_token_id,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        length_penalty=length_penalty,
        do_sample=False,
    )


__all__ = ["FUSED_LOSS_FROM_VOCAB", "LM_LOSS_CHOICES", "build_model", "generation_config", "lm_loss_for"]
