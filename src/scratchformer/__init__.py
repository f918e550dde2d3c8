"""scratchformer: a from-scratch self-attention encoder-decoder, native to Hugging Face transformers.

Importing the package registers the config and every head with the Auto classes, so that
``AutoModelForSeq2SeqLM.from_config(ScratchformerConfig(...))`` and ``AutoModel*.from_pretrained`` work.
Registration lives here, not in the modeling files, because those ship to the Hub as remote code.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration.configuration_scratchformer import ScratchformerConfig
from .modeling.modeling_scratchformer import (
    ScratchformerForConditionalGeneration,
    ScratchformerForMaskedLM,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
    ScratchformerModel,
    ScratchformerPreTrainedModel,
    decoding_compile_config,
)

AUTO_CLASSES = {
    AutoModel: ScratchformerModel,
    AutoModelForSeq2SeqLM: ScratchformerForConditionalGeneration,
    AutoModelForSequenceClassification: ScratchformerForSequenceClassification,
    AutoModelForTokenClassification: ScratchformerForTokenClassification,
    AutoModelForMaskedLM: ScratchformerForMaskedLM,
}

AutoConfig.register(ScratchformerConfig.model_type, ScratchformerConfig, exist_ok=True)
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(ScratchformerConfig, model_class, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "AUTO_CLASSES",
    "ScratchformerConfig",
    "ScratchformerForConditionalGeneration",
    "ScratchformerForMaskedLM",
    "ScratchformerForSequenceClassification",
    "ScratchformerForTokenClassification",
    "ScratchformerModel",
    "ScratchformerPreTrainedModel",
    "decoding_compile_config",
]
