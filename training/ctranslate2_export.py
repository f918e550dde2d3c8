"""A CTranslate2 export of the seq2seq head, and decoding with it (the optional extra ``[ctranslate2]``).

    scratchformer export outputs/g2p ct2/g2p --format ctranslate2 [--quantization int8]
    scratchformer predict outputs/g2p transformer --engine ctranslate2

CTranslate2's TransformerSpec is the encoder-decoder of "Attention Is All You Need": dot-product softmax
attention over every key, sinusoidal or learned absolute positions, LayerNorm before or after each sublayer.
So the variants it can express are those of EXPRESSIBLE; any other is refused, naming what cannot be
expressed. The weights map one to one (our fused ``qkv_proj`` / ``kv_proj`` are CTranslate2's fused
projections; the position table is written out, so sinusoidal and learned positions load alike).

The folder holds CTranslate2's ``model.bin`` + ``config.json`` + ``shared_vocabulary.json`` and the
transformers tokenizer (the tokenizer mapping): text -> our tokenizer's tokens -> CTranslate2 -> tokens ->
our tokenizer's decode, so outputs are compared and printed exactly as ours are.
"""

from pathlib import Path

import torch
from transformers import AutoTokenizer, GenerationConfig

from .files import require_empty_folder

EXPRESSIBLE = {
    "attention_score": ("dot",),
    "attention_normalizer": ("softmax",),
    "attention_pattern": ("full",),
    "position_encoding": ("sinusoidal", "learned"),
    "norm_placement": ("pre", "post"),
    "activation_function": ("relu", "gelu", "gelu_new", "silu", "swish", "tanh"),
}
HEAD = "ScratchformerForConditionalGeneration"
MODEL_FILE = "model.bin"


def import_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ImportError(
            "the CTranslate2 export needs the optional extra: pip install 'scratchformer[ctranslate2]'"
        ) from None
    return ctranslate2


def check_expressible(model):
    """Refuse, before any work, a head or a variant that CTranslate2's Transformer cannot express."""
    if type(model).__name__ != HEAD:
        raise ValueError(f"CTranslate2 exports the seq2seq head {HEAD} only; this folder holds {type(model).__name__}")
    config = model.config
    problems = [
        f"{name}={getattr(config, name)!r} (CTranslate2: {', '.join(allowed)})"
        for name, allowed in EXPRESSIBLE.items()
        if getattr(config, name) not in allowed
    ]
    if problems:
        raise ValueError("CTranslate2's Transformer cannot express " + "; ".join(problems))


def model_spec(model):
    """The ctranslate2.specs.TransformerSpec holding copies of `model`'s weights (CTranslate2 quantizes the
    spec's arrays in place: the model must not share them)."""
    check_expressible(model)
    import_ctranslate2()  # the optional extra: a clear error when it is not installed
    from ctranslate2.specs import common_spec, transformer_spec

    config = model.config
    activation = {
        "relu": common_spec.Activation.RELU,
        "gelu": common_spec.Activation.GELU,
        "gelu_new": common_spec.Activation.GELUTanh,
        "silu": common_spec.Activation.SWISH,
        "swish": common_spec.Activation.SWISH,
        "tanh": common_spec.Activation.Tanh,
    }
    spec = transformer_spec.TransformerSpec.from_config(
        (config.encoder_layers, config.decoder_layers),
        config.encoder_attention_heads,
        pre_norm=config.norm_placement == "pre",
        activation=activation[config.activation_function],
    )
    base = model.model
    for stack_spec, stack in ((spec.encoder, base.encoder), (spec.decoder, base.decoder)):
        set_stack(stack_spec, stack, config)
    spec.decoder.projection.weight = model.lm_head.weight.detach().clone()
    return spec


def set_stack(spec, stack, config):
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = stack.embed_tokens.weight.detach().clone()
    spec.scale_embeddings = stack.embed_tokens.embed_scale
    with torch.no_grad():  # the table of every position, sinusoidal or learned
        positions = torch.arange(config.max_position_embeddings)[None]
        spec.position_encodings.encodings = stack.embed_positions(positions)[0].float()
    if hasattr(spec, "layer_norm"):  # pre-norm: the stack's last LayerNorm
        set_norm(spec.layer_norm, stack.layer_norm)
    for layer_spec, layer in zip(spec.layer, stack.layers):
        set_linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv_proj)  # [W^q; W^k; W^v]
        set_linear(layer_spec.self_attention.linear[1], layer.self_attn.out_proj)  # W^O
        set_norm(layer_spec.self_attention.layer_norm, layer.self_attn_norm.layer_norm)
        if hasattr(layer, "encoder_attn"):
            set_linear(layer_spec.attention.linear[0], layer.encoder_attn.q_proj)
            set_linear(layer_spec.attention.linear[1], layer.encoder_attn.kv_proj)  # [W^k; W^v]
            set_linear(layer_spec.attention.linear[2], layer.encoder_attn.out_proj)
            set_norm(layer_spec.attention.layer_norm, layer.encoder_attn_norm.layer_norm)
        set_linear(layer_spec.ffn.linear_0, layer.ffn.fc1)
        set_linear(layer_spec.ffn.linear_1, layer.ffn.fc2)
        set_norm(layer_spec.ffn.layer_norm, layer.final_norm.layer_norm)


def set_linear(spec, module):
    spec.weight = module.weight.detach().clone()
    if module.bias is not None:
        spec.bias = module.bias.detach().clone()


def set_norm(spec, module):
    spec.gamma, spec.beta = module.weight.detach().clone(), module.bias.detach().clone()


def export_ctranslate2(model, tokenizer, out_dir, quantization: str | None = None) -> Path:
    """Write the CTranslate2 folder of the module docstring (`out_dir` new or empty); `quantization`: any of
    CTranslate2's (int8, int8_float32, ...). What cannot be expressed fails before anything is written."""
    out = Path(out_dir)
    require_empty_folder(out)
    if tokenizer is None:
        raise ValueError("CTranslate2 needs the vocabulary: the folder has no tokenizer files")
    spec = model_spec(model)
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(model.config.vocab_size)))
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    token = tokenizer.convert_ids_to_tokens
    spec.config.bos_token, spec.config.eos_token = token(model.config.bos_token_id), token(model.config.eos_token_id)
    spec.config.unk_token = tokenizer.unk_token
    spec.config.decoder_start_token = token(model.config.decoder_start_token_id)
    spec.config.layer_norm_epsilon = model.config.layer_norm_eps
    spec.validate()
    spec.optimize(quantization=quantization)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    tokenizer.save_pretrained(out)
    model.generation_config.save_pretrained(out)  # the decoding length and beams the model was scored with
    return out


class CTranslate2Generator:
    """generate() for texts, through a CTranslate2 folder: the same greedy/beam search, the same outputs."""

    def __init__(self, folder, device="cpu", compute_type="default", inter_threads=1, intra_threads=0):
        ctranslate2 = import_ctranslate2()
        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} has no {MODEL_FILE}: write it with `scratchformer export MODEL_DIR OUT --format ctranslate2`"
            )
        self.translator = ctranslate2.Translator(
            str(folder),
            device=device,
            compute_type=compute_type,
            inter_threads=inter_threads,
            intra_threads=intra_threads,
        )
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.generation_config = GenerationConfig.from_pretrained(folder)

    def generate_tokens(
        self, texts: list[str], num_beams: int | None = None, max_new_tokens: int | None = None, **options
    ):
        """Output token lists (without the start and end tokens); `options`: more Translator.translate_batch ones."""
        sources = [self.tokenizer.convert_ids_to_tokens(ids) for ids in self.tokenizer(texts)["input_ids"]]
        results = self.translator.translate_batch(
            sources,
            beam_size=num_beams or self.generation_config.num_beams or 1,
            max_decoding_length=max_new_tokens or self.generation_config.max_new_tokens,
            length_penalty=self.generation_config.length_penalty or 1.0,
            return_end_token=False,
            **options,
        )
        return [result.hypotheses[0] for result in results]

    def generate(self, texts: list[str], num_beams: int | None = None, max_new_tokens: int | None = None):
        """The decoded output of each text, as tokenizer.batch_decode(model.generate(...)) gives it."""
        tokens = self.generate_tokens(texts, num_beams, max_new_tokens)
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


__all__ = [
    "EXPRESSIBLE",
    "CTranslate2Generator",
    "check_expressible",
    "export_ctranslate2",
    "model_spec",
]
