"""What each head says about texts, as people read it: the generated text, every label's probability, a tag per
word, the masks filled.

Torch and a tokenizer only (no other part of this package): the tasks' `predict` (tasks.py) and the demo
(demo.py) call these functions, and an exported folder ships this file beside its app.py.
"""

import torch


@torch.no_grad()
def generate(model, tokenizer, texts: list[str], **generation) -> tuple[list[str], torch.Tensor]:
    """(the generated text of each input, the generated ids (batch, length) with their leading <s>);
    `generation`: generate()'s arguments (num_beams, do_sample, temperature, ...)."""
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
    ids = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **generation)
    return tokenizer.batch_decode(ids, skip_special_tokens=True), ids


@torch.no_grad()
def label_probabilities(model, tokenizer, texts: list[str]) -> list[dict[str, float]]:
    """label -> softmax probability, for each text, in the order of the label ids."""
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
    probs = model(**batch).logits.softmax(-1)
    return [{model.config.id2label[i]: float(p[i]) for i in range(p.shape[0])} for p in probs]


@torch.no_grad()
def word_tags(model, tokenizer, texts: list[str]) -> list[list[tuple[str, str]]]:
    """(word, tag) for each space-separated word of each text: the tag of the word's first subword."""
    results = []
    for text in texts:
        words = text.split()
        encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt").to(model.device)
        best = model(**encoded).logits.argmax(-1)[0].tolist()
        tags, previous = [], None
        for position, word in enumerate(encoded.word_ids(0)):
            if word is not None and word != previous:
                tags.append((words[word], model.config.id2label[best[position]]))
            previous = word
        results.append(tags)
    return results


@torch.no_grad()
def fill_masks(model, tokenizer, texts: list[str]) -> list[str]:
    """Each text with every mask token replaced by the model's first choice (a masked-LM head)."""
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
    ids = batch["input_ids"].clone()
    masked = ids == tokenizer.mask_token_id
    ids[masked] = model(**batch).logits.argmax(-1)[masked]
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


__all__ = ["fill_masks", "generate", "label_probabilities", "word_tags"]
