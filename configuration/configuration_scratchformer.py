"""Configuration of the scratchformer encoder-decoder: every hyper-parameter and every variant name.

Field names follow BART so that ecosystem tools recognise them. The variants of the lecture notes are
one field each; their allowed values are listed once, in ``CHOICES``, and checked at construction
(and therefore on ``from_pretrained`` too).
"""

from transformers import PreTrainedConfig

# One entry per variant axis of the notes. A new variant = one registered implementation + one name here.
CHOICES = {
    "attention_score": ("dot", "additive"),  # A = K^T Q / sqrt(d)  |  A = v^T tanh(W q + U k)
    "attention_normalizer": ("softmax", "relu", "sigmoid"),  # "the softmax can be replaced"
    "attention_pattern": ("full", "window", "linear"),  # all keys | |i - j| <= w (truncated) | phi(Q)(phi(K)^T V)
    "position_encoding": ("sinusoidal", "learned", "rotary", "none"),  # hand-crafted | learned | RoPE | no order
    "norm_placement": ("post", "pre"),  # LayerNorm(x + f(x)) (the paper) | x + f(LayerNorm(x))
}

ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu", "swish", "tanh")

# How the seq2seq head computes its training loss: from stored logits, or fused with the head (modeling/loss_...).
LM_LOSSES = ("logits", "fused")


class ScratchformerConfig(PreTrainedConfig):
    r"""Configuration for [`ScratchformerModel`] and its heads.

    Args:
        vocab_size: size of the shared source/target vocabulary.
        d_model: width of every token vector (the notes' columns of I).
        encoder_layers / decoder_layers: number of blocks in each stack.
        encoder_attention_heads / decoder_attention_heads: heads h; each head has d_model / h dimensions.
        encoder_ffn_dim / decoder_ffn_dim: inner width of the position-wise feed-forward network.
        activation_function: non-linearity of the feed-forward network.
        dropout / attention_dropout / activation_dropout: on residual branches / attention weights / FFN inner.
        max_position_embeddings: longest sequence the position encoding covers.
        init_std: standard deviation of the normal initialisation of every weight matrix.
        layer_norm_eps: epsilon of every LayerNorm.
        scale_embedding: multiply token embeddings by sqrt(d_model) (as in "Attention Is All You Need").
        classifier_dropout: dropout before the sequence-classification head.
        label_smoothing: epsilon of label-smoothed cross-entropy in the seq2seq head's loss.
        lm_loss: how the seq2seq head's loss is computed in training mode, given labels: "logits" (from the
            (b, n, vocab) logits, which it returns) or "fused" (the head and the cross-entropy in one pass, a block
            of rows at a time, never storing the logits: faster and lighter, and the output's ``logits`` is None).
            In eval mode, and without labels, the logits are always computed and returned.
        sparse_prediction: the masked-LM head, given labels, scores only the masked positions (its logits are theirs).
        input_features_dim: None (the encoder reads tokens, or d_model-wide ``inputs_embeds``), or the width f of the
            vectors the encoder reads as ``inputs_embeds`` (frames, patches, graph nodes: any vector set), which
            it maps to d_model with a learned projection, a^i = W_in x^i + b_in, before adding positions.
        attention_score: "dot" (scaled dot product) or "additive" (v^T tanh(W q + U k)).
        attention_normalizer: "softmax", "relu" or "sigmoid", applied to the scores of each query.
        attention_pattern: "full", "window" (truncated self-attention, each query sees keys within
            +-attention_window; causal in the decoder) or "linear" (phi(x) = elu(x) + 1, Katharopoulos et al.).
        attention_window: w for attention_pattern="window"; must be None otherwise.
        position_encoding: "sinusoidal", "learned", "rotary" or "none".
        rope_theta: base of the rotary frequencies (position_encoding="rotary").
        norm_placement: "post" (LayerNorm after the residual add, the paper) or "pre".
    """

    model_type = "scratchformer"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]  # the cache output, named as from 5.24 and before
    # Generation (the KV cache) asks for num_hidden_layers / num_attention_heads: those are the decoder's.
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "decoder_attention_heads",
        "num_hidden_layers": "decoder_layers",
    }

    def __init__(
        self,
        vocab_size=8000,
        d_model=256,
        encoder_layers=3,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=1024,
        decoder_ffn_dim=1024,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=512,
        init_std=0.02,
        layer_norm_eps=1e-5,
        scale_embedding=True,
        classifier_dropout=0.0,
        label_smoothing=0.0,
        lm_loss="logits",
        sparse_prediction=False,
        input_features_dim=None,
        attention_score="dot",
        attention_normalizer="softmax",
        attention_pattern="full",
        attention_window=None,
        position_encoding="sinusoidal",
        rope_theta=10000.0,
        norm_placement="post",
        use_cache=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        is_encoder_decoder=True,
        tie_word_embeddings=True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.decoder_attention_heads = decoder_attention_heads
        self.encoder_ffn_dim = encoder_ffn_dim
        self.decoder_ffn_dim = decoder_ffn_dim
        self.activation_function = activation_function
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.max_position_embeddings = max_position_embeddings
        self.init_std = init_std
        self.layer_norm_eps = layer_norm_eps
        self.scale_embedding = scale_embedding
        self.classifier_dropout = classifier_dropout
        self.label_smoothing = label_smoothing
        self.lm_loss = lm_loss
        self.sparse_prediction = sparse_prediction
        self.input_features_dim = input_features_dim
        self.attention_score = attention_score
        self.attention_normalizer = attention_normalizer
        self.attention_pattern = attention_pattern
        self.attention_window = attention_window
        self.position_encoding = position_encoding
        self.rope_theta = rope_theta
        self.norm_placement = norm_placement
        self.use_cache = use_cache
        # Base-class fields go through super(): assigned before it, they would be reset to defaults.
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            is_encoder_decoder=is_encoder_decoder,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.check_fields()

    def check_fields(self):
        """Raise ValueError naming the field, the value and what is allowed, for any invalid setting."""

        def fail(field, allowed):
            raise ValueError(f"ScratchformerConfig: {field}={getattr(self, field)!r} is invalid; allowed: {allowed}")

        for field, allowed in CHOICES.items():
            if getattr(self, field) not in allowed:
                fail(field, ", ".join(repr(a) for a in allowed))
        if self.activation_function not in ACTIVATIONS:
            fail("activation_function", ", ".join(repr(a) for a in ACTIVATIONS))
        if self.lm_loss not in LM_LOSSES:
            fail("lm_loss", ", ".join(repr(a) for a in LM_LOSSES))
        for field in (
            "vocab_size",
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "encoder_attention_heads",
            "decoder_attention_heads",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if field.endswith("_layers") else 1):
                fail(field, "an integer >= " + ("0" if field.endswith("_layers") else "1"))
        f = self.input_features_dim
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 1):
            fail("input_features_dim", "None or an integer >= 1")
        for side in ("encoder", "decoder"):
            heads = getattr(self, f"{side}_attention_heads")
            if self.d_model % heads:
                fail(f"{side}_attention_heads", f"a divisor of d_model={self.d_model}")
            if self.position_encoding == "rotary" and (self.d_model // heads) % 2:
                fail(
                    f"{side}_attention_heads",
                    f"a head count giving an even head size d_model/heads for rotary "
                    f"positions (d_model={self.d_model})",
                )
        for field in ("dropout", "attention_dropout", "activation_dropout", "classifier_dropout", "label_smoothing"):
            value = getattr(self, field)
            if value is not None and not 0.0 <= value < 1.0:
                fail(field, "a probability in [0, 1)")
        if self.attention_pattern == "window":
            w = self.attention_window
            if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                fail("attention_window", "an integer >= 1 when attention_pattern='window'")
        elif self.attention_window is not None:
            fail("attention_window", f"None unless attention_pattern='window' (it is {self.attention_pattern!r})")
        if self.attention_pattern == "linear" and (self.attention_score, self.attention_normalizer) != (
            "dot",
            "softmax",
        ):
            raise ValueError(
                "ScratchformerConfig: attention_pattern='linear' replaces the score and the softmax by the feature "
                f"map phi(x) = elu(x) + 1; it needs attention_score='dot' and attention_normalizer='softmax' "
                f"(got attention_score={self.attention_score!r}, attention_normalizer={self.attention_normalizer!r})"
            )
        if not (self.init_std > 0 and self.layer_norm_eps > 0 and self.rope_theta > 0):
            raise ValueError(
                "ScratchformerConfig: init_std, layer_norm_eps and rope_theta must be > 0 "
                f"(got {self.init_std}, {self.layer_norm_eps}, {self.rope_theta})"
            )


__all__ = ["CHOICES", "ScratchformerConfig"]
