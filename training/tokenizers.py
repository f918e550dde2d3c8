"""Tokenizers trained with the `tokenizers` library on the training split, wrapped as PreTrainedTokenizerFast.

Every tokenizer here has the same four special tokens at the same ids, matching ScratchformerConfig's defaults:

    <pad> = 0    <s> = 1 (bos, decoder start)    </s> = 2 (eos)    <unk> = 3

and appends </s> to every encoded text, so the encoder sees ``x_1 ... x_n </s>`` and AutoTokenizer loads the
saved folder without this package.

- ``train_g2p_tokenizer``: one symbol per character for the source word (lower-cased by the normalizer), plus
  the phoneme inventory as whole tokens for the target side. Targets are encoded with ``encode_phonemes``
  (split on spaces); ``decode`` joins phonemes with spaces.
- ``train_text_tokenizer``: BPE, Unigram (both with a Metaspace pre-tokenizer, so decode restores spaces) or
  WordPiece, for translation, tagging (pre-split words, labels aligned via ``word_ids()``) and classification.
"""

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK, MASK = "<pad>", "<s>", "</s>", "<unk>", "<mask>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0, 1, 2, 3; the pretraining tasks add MASK = 4
TOKENIZER_TYPES = ("bpe", "unigram", "wordpiece", "char")


def wrap(backend: Tokenizer, model_max_length: int | None = None) -> PreTrainedTokenizerFast:
    """Wrap a `tokenizers.Tokenizer` as the transformers tokenizer saved with the model (with its <mask> token,
    id 4, when it has one: the pretraining tasks' tokenizers)."""
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, backend.token_to_id(EOS))]
    )
    kwargs = {"model_max_length": model_max_length} if model_max_length else {}
    if backend.token_to_id(MASK) is not None:
        kwargs["mask_token"] = MASK
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK, **kwargs
    )


def train_g2p_tokenizer(words: Iterable[str], phoneme_strings: Iterable[str], model_max_length=None):
    """Characters of the (lower-cased) words + the phoneme symbols seen in the targets, as one vocabulary."""
    chars = sorted({c for word in words for c in word.lower() if not c.isspace()})
    phonemes = sorted({p for phones in phoneme_strings for p in phones.split()})
    clash = set(chars) & set(phonemes)
    if clash:
        raise ValueError(
            f"G2P tokenizer: symbols {sorted(clash)} occur both as characters and as phonemes; "
            "phonemes are expected upper-case (ARPAbet) and words are lower-cased"
        )
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + chars + phonemes)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    # One token per non-space character: "Transformer" -> t r a n s f o r m e r </s>
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    tokenizer = wrap(backend, model_max_length)
    tokenizer.init_kwargs["g2p_phonemes"] = phonemes  # saved in tokenizer_config.json, for reference
    return tokenizer


def encode_phonemes(tokenizer, phonemes: str, vocab: dict | None = None) -> list[int]:
    """'T R AE N' -> ids of T R AE N </s>; an unknown phoneme is an error, not <unk>. Pass `vocab`
    (tokenizer.get_vocab(), which builds a new dict on every call) when encoding many."""
    vocab = vocab if vocab is not None else tokenizer.get_vocab()
    symbols = phonemes.split()
    unknown = [p for p in symbols if p not in vocab]
    if unknown:
        raise ValueError(f"phonemes {unknown} are not in the tokenizer's vocabulary (from {phonemes!r})")
    return [vocab[p] for p in symbols] + [vocab[EOS]]


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids (with the closing </s>) of many texts, straight from the `tokenizers` backend: the same ids as
    tokenizer(texts)["input_ids"], without building a BatchEncoding per row."""
    return [encoding.ids for encoding in tokenizer.backend_tokenizer.encode_batch(list(texts))]


def train_text_tokenizer(texts: Iterable[str], kind="bpe", vocab_size=8000, model_max_length=None, mask=False):
    """Subword tokenizer trained on `texts` (an iterator over the training split); `mask`: with a <mask> token
    (id 4), for pretraining, and so for the models fine-tuned from it."""
    specials = SPECIAL_TOKENS + [MASK] * mask
    if kind == "bpe":
        backend = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    elif kind == "unigram":
        backend = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token=UNK, show_progress=False
        )
    elif kind == "wordpiece":
        backend = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    elif kind == "char":
        backend = Tokenizer(models.BPE(unk_token=UNK))  # BPE with no merges = characters
        trainer = trainers.BpeTrainer(vocab_size=0, special_tokens=specials, show_progress=False)
    else:
        raise ValueError(f"tokenizer_type={kind!r}; allowed: {', '.join(TOKENIZER_TYPES)}")
    backend.normalizer = normalizers.NFKC()
    if kind == "wordpiece":
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece()
    else:
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
        backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(texts, trainer=trainer)
    for i, token in enumerate(specials):
        if backend.token_to_id(token) != i:
            raise RuntimeError(f"{kind} trainer put {token} at id {backend.token_to_id(token)}, expected {i}")
    return wrap(backend, model_max_length)


__all__ = [
    "MASK",
    "SPECIAL_TOKENS",
    "TOKENIZER_TYPES",
    "encode_phonemes",
    "encode_texts",
    "train_g2p_tokenizer",
    "train_text_tokenizer",
    "wrap",
]
