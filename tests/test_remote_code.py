"""The exported configuration/modeling sources stand alone as Hub remote code.

A process whose sys.meta_path blocks `scratchformer` (tests/hub_client.py, run by hub_fixtures.pulled)
loads exported folders with trust_remote_code=True: one seq2seq per group of variants, together covering
every value of every CHOICES axis, and compares logits and greedy generation with the in-package model.
"""

import re
from pathlib import Path

import pytest
import torch

import scratchformer
from scratchformer import ScratchformerConfig
from scratchformer.configuration import configuration_scratchformer
from scratchformer.configuration.configuration_scratchformer import CHOICES
from scratchformer.modeling import modeling_scratchformer
from scratchformer.training.export import auto_map, check_standalone, export_for_hub, remote_code_sources

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import REMOTE_CODE_VARIANTS, build_model, local_outputs, seq2seq_outputs  # noqa: E402

pytest_plugins = ["hub_fixtures"]


def test_variants_cover_every_choice(hub_exports):
    """The variants plus the default config of the pulled seq2seq (test_hub.py) use every CHOICES value."""
    configs = [ScratchformerConfig(**overrides) for overrides in REMOTE_CODE_VARIANTS.values()]
    configs.append(hub_exports["seq2seq"].model.config)
    for field, allowed in CHOICES.items():
        used = {getattr(config, field) for config in configs}
        assert used == set(allowed), f"{field}: the remote-code variants use {used}, CHOICES has {allowed}"


@pytest.mark.parametrize("name", list(REMOTE_CODE_VARIANTS))
def test_remote_code_equals_package(pulled, variant_exports, hub_exports, name):
    remote = pulled["remote_code"]["variants"][name]
    assert remote["module"].startswith("transformers_modules.") and not pulled["remote_code"]["package_imported"]
    local = seq2seq_outputs(variant_exports[name].model, local_outputs(hub_exports)["inputs"])
    torch.testing.assert_close(remote["logits"], local["logits"])
    assert torch.equal(remote["generated"], local["generated"])
    torch.testing.assert_close(remote["scores"], remote["scores_uncached"])  # its cache (or state) is used


def test_exported_sources_are_the_package_sources(tmp_path):
    """Same text as the package files, except the one config import per file."""
    folder = export_for_hub(build_model("seq_cls"), tmp_path / "export")  # fresh: sources may change meanwhile
    sources = {Path(configuration_scratchformer.__file__)} | set(
        Path(modeling_scratchformer.__file__).parent.glob("*_scratchformer.py")
    )
    assert sorted(p.name for p in folder.glob("*.py")) == sorted(p.name for p in sources)
    for source in sources:
        exported = (folder / source.name).read_text()
        assert exported == source.read_text().replace(
            "from ..configuration.configuration_scratchformer import", "from .configuration_scratchformer import"
        )
        assert not re.search(r"^\s*from \.\.|^\s*(from|import) scratchformer", exported, flags=re.M)


def test_auto_map_names_every_head():
    mapping = auto_map()
    assert mapping["AutoConfig"] == "configuration_scratchformer.ScratchformerConfig"
    assert {k for k in mapping if k != "AutoConfig"} == {auto.__name__ for auto in scratchformer.AUTO_CLASSES}
    sources = remote_code_sources()
    for reference in mapping.values():
        module, cls = reference.split(".")
        assert re.search(rf"^class {cls}\b", sources[f"{module}.py"], flags=re.M), reference


@pytest.mark.parametrize(
    "line",
    [
        "from ..configuration.configuration_scratchformer import ScratchformerConfig",
        "from . import attention_scratchformer",
        "from .sub.masks import keep_mask",
        "from .missing_scratchformer import thing",
        "from scratchformer.modeling.masks_scratchformer import keep_mask",
        "import scratchformer",
    ],
)
def test_check_standalone_refuses_imports_transformers_would_not_copy(line):
    with pytest.raises(RuntimeError, match="cannot ship as Hub remote code"):
        check_standalone(
            "modeling_scratchformer.py",
            f"import torch\n{line}\n",
            shipped={"modeling_scratchformer.py", "masks_scratchformer.py"},
        )


def test_check_standalone_accepts_sibling_imports():
    check_standalone(
        "modeling_scratchformer.py",
        "from .masks_scratchformer import keep_mask\n",
        shipped={"modeling_scratchformer.py", "masks_scratchformer.py"},
    )
