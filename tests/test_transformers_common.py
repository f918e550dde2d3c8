"""transformers' own common model tests (ModelTesterMixin, GenerationTesterMixin, ConfigTester) on our classes.

Every model inside transformers is tested by these mixins (tests/models/bart/test_modeling_bart.py, and
for encoder-only heads T5's ``T5EncoderOnlyModelTest``). The mixins are not in the wheel, and no
transformers test code is copied into this repository: ``TRANSFORMERS_TESTS_DIR`` names a transformers
``tests/`` directory at run time, and it is imported as the package ``_transformers_tests`` (our own
``tests/`` folder is not a package, and its name must stay free).

- The sdist of the installed release (``pip download --no-deps --no-binary :all: transformers==X`` ; .ci/run
  does this) has tests/test_modeling_common.py and tests/test_configuration_common.py but not
  tests/generation/, tests/exporters/ nor tests/utils/, which those files import. Missing modules get
  stand-ins here (empty mixins, no common config kwargs), and one skipped test per stand-in says so.
- A git checkout's tests/ (at the installed release's tag) has them all, and runs the generation tests.

The mixins pick labels and base-model checks by transformers' in-library name tables
(``MODEL_FOR_*_MAPPING_NAMES``); our model_type is added to them for the tests of this module only, as
modeling_auto.py does for a model inside transformers.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
import unittest
import warnings
from pathlib import Path
from unittest import mock

import pytest

TESTS_DIR_VARIABLE = "TRANSFORMERS_TESTS_DIR"
PACKAGE = "_transformers_tests"
HOW_TO_GET = (
    f"set {TESTS_DIR_VARIABLE} to a transformers tests/ directory of the installed release: the sdist's "
    "(pip download --no-deps --no-binary :all: transformers==$(python -c 'import transformers; "
    "print(transformers.__version__)') and extract it; .ci/run does this) or a git checkout's at that tag "
    "(which also has tests/generation/ for GenerationTesterMixin)"
)


def transformers_tests_dir():
    value = os.environ.get(TESTS_DIR_VARIABLE)
    if not value:
        pytest.skip(f"{TESTS_DIR_VARIABLE} is not set; {HOW_TO_GET}", allow_module_level=True)
    path = Path(value).resolve()
    if not (path / "test_modeling_common.py").is_file():
        pytest.skip(
            f"{TESTS_DIR_VARIABLE}={value} has no test_modeling_common.py; {HOW_TO_GET}", allow_module_level=True
        )
    return path


def stand_in_mixin(name, module):
    return type(name, (), {"__doc__": f"Stand-in: {module} is absent, so this mixin holds no tests."})


# Modules of a transformers tests/ tree that the common files import, with what a stand-in provides.
STAND_INS = {
    "exporters.test_export": lambda: {
        "ExportTesterMixin": stand_in_mixin("ExportTesterMixin", "exporters/test_export.py"),
        "ExportGenerateTesterMixin": stand_in_mixin("ExportGenerateTesterMixin", "exporters/test_export.py"),
    },
    "generation.test_utils": lambda: {
        "GenerationTesterMixin": stand_in_mixin("GenerationTesterMixin", "generation/test_utils.py"),
    },
    "utils.test_configuration_utils": lambda: {"config_common_kwargs": {}},
}


def import_transformers_tests(path):
    """Import ``path`` (a transformers tests/ directory) as the package PACKAGE, with stand-ins for the
    modules it lacks; returns the names of the modules that were stood in for."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE].stood_in
    spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(path)]
    package = importlib.util.module_from_spec(spec)
    package.stood_in = []
    sys.modules[PACKAGE] = package
    for name, contents in STAND_INS.items():
        parent, leaf = name.split(".")
        if (path / parent / f"{leaf}.py").is_file():
            continue
        if (path / parent).is_dir():
            parent_module = importlib.import_module(f"{PACKAGE}.{parent}")
        else:
            parent_module = types.ModuleType(f"{PACKAGE}.{parent}")
            parent_module.__path__ = []
            sys.modules[parent_module.__name__] = parent_module
        module = types.ModuleType(f"{PACKAGE}.{name}", f"stand-in for {path / parent / leaf}.py (absent)")
        module.__dict__.update(contents())
        sys.modules[module.__name__] = module
        setattr(parent_module, leaf, module)
        package.stood_in.append(f"{parent}/{leaf}.py")
    return package.stood_in


STOOD_IN = import_transformers_tests(transformers_tests_dir())

from transformers.models.auto import modeling_auto  # noqa: E402

from scratchformer import (  # noqa: E402
    ScratchformerConfig,
    ScratchformerForConditionalGeneration,
    ScratchformerForSequenceClassification,
    ScratchformerForTokenClassification,
    ScratchformerModel,
)


def the_installed_transformers(path, file="__init__.py"):
    """test_configuration_common.py runs ``direct_transformers_import(tests/)``, which executes
    tests/__init__.py (absent from the sdist) and returns the installed transformers: return it directly."""
    return importlib.import_module("transformers")


with warnings.catch_warnings(), mock.patch("transformers.utils.direct_transformers_import", the_installed_transformers):
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)  # transformers registers its marks in its conftest
    # The git tree's generation/test_utils.py imports `tests.exporters.test_export` by its absolute name
    # (transformers runs pytest from its repo root): point that name at this package's module.
    sys.modules.setdefault("tests.exporters.test_export", importlib.import_module(f"{PACKAGE}.exporters.test_export"))
    sys.modules.setdefault("tests.exporters", sys.modules[f"{PACKAGE}.exporters"])
    _common = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    _config_common = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    _generation = importlib.import_module(f"{PACKAGE}.generation.test_utils")

ModelTesterMixin, ids_tensor = _common.ModelTesterMixin, _common.ids_tensor
ConfigTester = _config_common.ConfigTester
GenerationTesterMixin = _generation.GenerationTesterMixin

# What modeling_auto.py would list for scratchformer if it lived inside transformers.
IN_LIBRARY_NAMES = {
    "MODEL_MAPPING_NAMES": "ScratchformerModel",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": "ScratchformerForConditionalGeneration",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "ScratchformerForSequenceClassification",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "ScratchformerForTokenClassification",
}


@pytest.fixture(autouse=True, scope="module")
def listed_in_transformers_name_tables():
    patches = [
        mock.patch.dict(getattr(modeling_auto, table), {ScratchformerConfig.model_type: name})
        for table, name in IN_LIBRARY_NAMES.items()
    ]
    for patch in patches:
        patch.start()
    yield
    for patch in reversed(patches):
        patch.stop()


# ------------------------------------------------------------------------------------ where the mixins are


@pytest.mark.parametrize(
    "module", ["generation/test_utils.py", "exporters/test_export.py", "utils/test_configuration_utils.py"]
)
def test_mixin_source_present(module):
    """One visible skip per stand-in, naming the tests it leaves out."""
    left_out = {
        "generation/test_utils.py": "GenerationTesterMixin (generate() tests) does not run",
        "exporters/test_export.py": "ExportTesterMixin (torch.export / ONNX / ExecuTorch tests) does not run",
        "utils/test_configuration_utils.py": "ConfigTester.check_config_arguments_init runs with no common kwargs",
    }
    if module in STOOD_IN:
        pytest.skip(
            f"{TESTS_DIR_VARIABLE} has no {module} (transformers' sdist omits it): {left_out[module]}; "
            "a git checkout's tests/ at the installed release's tag has it"
        )


# ------------------------------------------------------------------------------------------ model testers


class ScratchformerModelTester:
    """BART's model tester (tests/models/bart/test_modeling_bart.py), for our config."""

    def __init__(
        self,
        parent,
        batch_size=13,
        seq_length=7,
        is_training=True,
        use_labels=False,
        vocab_size=99,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=4,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=50,
        eos_token_id=2,
        pad_token_id=1,
        bos_token_id=0,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.use_labels = use_labels
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id

    def get_config(self):
        return ScratchformerConfig(
            vocab_size=self.vocab_size,
            d_model=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            encoder_attention_heads=self.num_attention_heads,
            decoder_attention_heads=self.num_attention_heads,
            encoder_ffn_dim=self.intermediate_size,
            decoder_ffn_dim=self.intermediate_size,
            activation_function=self.hidden_act,
            dropout=self.hidden_dropout_prob,
            attention_dropout=self.attention_probs_dropout_prob,
            max_position_embeddings=self.max_position_embeddings,
            eos_token_id=self.eos_token_id,
            bos_token_id=self.bos_token_id,
            pad_token_id=self.pad_token_id,
            decoder_start_token_id=self.bos_token_id,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = self.eos_token_id
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        config = self.get_config()
        inputs_dict = {
            "input_ids": input_ids,
            "decoder_input_ids": decoder_input_ids,
            "attention_mask": input_ids.ne(config.pad_token_id),
            "decoder_attention_mask": decoder_input_ids.ne(config.pad_token_id),
        }
        return config, inputs_dict

    def prepare_config_and_inputs_for_common(self):
        return self.prepare_config_and_inputs()


class ScratchformerEncoderOnlyModelTester(ScratchformerModelTester):
    """T5's ``T5EncoderOnlyModelTester``: the classification heads read the encoder only, so the config says
    is_encoder_decoder=False and the inputs are the encoder's (with a random attention mask, as T5's)."""

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.encoder_seq_length = self.seq_length
        self.is_encoder_decoder = False

    def get_config(self):
        config = super().get_config()
        config.is_encoder_decoder = False
        return config

    def prepare_config_and_inputs_for_common(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = ids_tensor([self.batch_size, self.seq_length], vocab_size=2)
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


# ------------------------------------------------------------------------------------------- test classes


class ScratchformerModelTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    """As BART's ``BartModelTest`` (its pipeline tests need Hub checkpoints, so no PipelineTesterMixin)."""

    all_model_classes = (ScratchformerModel, ScratchformerForConditionalGeneration)
    is_encoder_decoder = True
    # The mixin dates a model by the "# Copyright YYYY" line of its config file and skips this check before
    # 2023; ours has no such line and is new, so run it.
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = ScratchformerModelTester(self)
        self.config_tester = ConfigTester(self, config_class=ScratchformerConfig, d_model=32)

    def test_config(self):
        self.config_tester.run_common_tests()


class ScratchformerEncoderOnlyModelTest(ModelTesterMixin, unittest.TestCase):
    """As T5's ``T5EncoderOnlyModelTest``: the two heads that own no decoder weights."""

    all_model_classes = (ScratchformerForSequenceClassification, ScratchformerForTokenClassification)
    test_can_init_all_missing_weights_before_2023 = True  # see ScratchformerModelTest

    def setUp(self):
        self.model_tester = ScratchformerEncoderOnlyModelTester(self)
        self.config_tester = ConfigTester(self, config_class=ScratchformerConfig, d_model=32)

    def test_config(self):
        self.config_tester.run_common_tests()
