"""The model works the same on every transformers release it claims (modeling/compat_scratchformer.py)."""

import importlib
import logging
import sys
import warnings

import pytest
import torch
import transformers
from model_tester import ModelTester
from transformers import DynamicCache, EncoderDecoderCache

from scratchformer import ScratchformerForConditionalGeneration
from scratchformer.modeling import compat_scratchformer
from scratchformer.modeling.compat_scratchformer import (
    CACHE_FIELD,
    TESTED_TRANSFORMERS,
    the_cache,
    untested_transformers_message,
)

tester = ModelTester()


def build(**overrides):
    torch.manual_seed(0)
    return ScratchformerForConditionalGeneration(tester.get_config(**overrides)).eval()


def test_the_cache_field_is_the_one_transformers_declares():
    """The output field is whichever name the running release's outputs (and generate()) use."""
    from dataclasses import fields

    from transformers.generation.utils import GenerateEncoderDecoderOutput

    assert CACHE_FIELD in {f.name for f in fields(transformers.modeling_outputs.Seq2SeqLMOutput)}
    assert CACHE_FIELD in {f.name for f in fields(GenerateEncoderDecoderOutput)}


def test_both_names_at_once_is_an_error():
    first = EncoderDecoderCache(DynamicCache(), DynamicCache())
    second = EncoderDecoderCache(DynamicCache(), DynamicCache())
    assert the_cache(first, None) is first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old name warns from 5.24 on
        assert the_cache(None, second) is second
    with pytest.raises(ValueError, match="`cache` and `past_key_values`"):
        the_cache(first, second)
    model = build()
    inputs = tester.prepare_inputs(model.config)
    with pytest.raises(ValueError, match="one name"):
        model(**inputs, cache=first, past_key_values=second, use_cache=True)


def test_generate_logs_no_deprecation_warning(caplog):
    """Neither the forward's arguments nor the outputs it builds use a name the running release deprecates."""
    model = build()
    inputs = tester.prepare_inputs(model.config)
    transformers.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cached = model.generate(
                **inputs | dict(decoder_input_ids=None),
                max_new_tokens=5,
                min_new_tokens=5,
                num_beams=2,
                return_dict_in_generate=True,
            )
    finally:
        transformers.logging.disable_propagation()
    messages = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    assert not [m for m in messages if "deprecat" in m.lower()], messages
    assert getattr(cached, CACHE_FIELD).get_seq_length() > 0


@pytest.mark.parametrize(
    "version, warns",
    [
        (TESTED_TRANSFORMERS[0], False),
        (TESTED_TRANSFORMERS[1], False),
        ("5.99.0", False),
        ("5.16.1", True),
        ("4.57.6", True),
        ("6.0.0", True),
    ],
)
def test_untested_releases_are_named(version, warns):
    message = untested_transformers_message(version)
    assert (message is not None) == warns
    if warns:
        assert version in message and TESTED_TRANSFORMERS[0] in message and TESTED_TRANSFORMERS[1] in message


def test_an_untested_major_version_warns_once_on_import(monkeypatch):
    """Loading the model code under transformers 6 warns once, naming the tested range; building and running
    a model afterwards adds no further warning."""
    running = sys.modules["transformers"]  # compat reads the version of the module it imported
    monkeypatch.setattr(running, "__version__", "6.0.0")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            importlib.reload(compat_scratchformer)
            model = build()
            model(**tester.prepare_inputs(model.config))
    finally:
        monkeypatch.undo()
        importlib.reload(compat_scratchformer)
    untested = [str(w.message) for w in caught if "tested on transformers" in str(w.message)]
    assert len(untested) == 1 and "6.0.0" in untested[0] and TESTED_TRANSFORMERS[1] in untested[0], untested
    assert compat_scratchformer._message is None


def repo_file(name):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / name
    if not path.exists():
        pytest.skip(f"{name} is not here (tests run outside a source checkout)")
    return path


def test_the_lock_satisfies_the_claimed_ranges_and_the_tested_range():
    """requirements-lock.txt pins every dependency of pyproject.toml inside its range; transformers' lowest
    claimed release is TESTED_TRANSFORMERS' oldest, and the lock's is no newer than its newest."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    project = tomllib.loads(repo_file("pyproject.toml").read_text())["project"]
    claimed = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    lock = {}
    for line in repo_file("requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[canonicalize_name(name)] = Version(version)
    for requirement in claimed:
        pinned = lock.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not in the lock"
        assert requirement.specifier.contains(pinned), f"lock {requirement.name}=={pinned} outside {requirement}"
    transformers_range = next(r for r in claimed if r.name == "transformers").specifier
    lowest = min(Version(s.version) for s in transformers_range if s.operator == ">=")
    assert lowest == Version(TESTED_TRANSFORMERS[0])
    assert lock["transformers"] <= Version(TESTED_TRANSFORMERS[1])
