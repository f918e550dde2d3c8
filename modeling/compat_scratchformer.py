"""What differs between the transformers releases this model is tested on, in one place.

The model ships to the Hub as remote code, so this file travels with it: whoever loads an export runs
these checks against *their* transformers, not ours.

- **The cache's name.** transformers 5.24 renamed the key/value cache: ``generate()`` passes it to
  ``forward`` as ``cache=`` and reads it back from ``outputs.cache``; 5.17-5.23 say ``past_key_values``
  in both places. Every forward here accepts either name (``the_cache``), and every output carries the
  cache under the field that the running release's ``ModelOutput`` classes declare (``cache_field``), so
  that ``generate()`` logs no deprecation warning on any release. Passing ``past_key_values`` yourself
  on 5.24 or later warns, as it does for transformers' own models.
- **The tested range.** ``TESTED_TRANSFORMERS`` is the oldest and newest release CI ran this code on;
  the exported model card states it, and importing this file under another major version (or below the
  oldest) warns once per process (once per Hub repo for remote code), naming the range.
"""

import dataclasses
import warnings

import torch
import transformers
from packaging.version import Version
from transformers.modeling_outputs import Seq2SeqLMOutput

# Oldest and newest transformers release the suite passed on (.ci/run: lowest, lock, newest).
TESTED_TRANSFORMERS = ("5.17.0", "5.25.0")
# The requirement that installs a tested release: from the oldest up to the next major.
TESTED_REQUIREMENT = f"transformers>={TESTED_TRANSFORMERS[0]},<{Version(TESTED_TRANSFORMERS[0]).major + 1}"

# "cache" from transformers 5.24 on, "past_key_values" before: the field name in transformers' outputs.
CACHE_FIELD = "cache" if "cache" in {f.name for f in dataclasses.fields(Seq2SeqLMOutput)} else "past_key_values"


def the_cache(cache=None, past_key_values=None):
    """The cache passed to a forward under either name (``cache``, or the older ``past_key_values``).
    Where the running release calls it ``cache``, the old name warns as transformers' own models do."""
    if past_key_values is None:
        return cache
    if cache is not None and cache is not past_key_values:
        raise ValueError(
            "got both `cache` and `past_key_values`; pass the cache under one name "
            "(`cache` on transformers >= 5.24, `past_key_values` before)"
        )
    if CACHE_FIELD == "cache" and not torch.compiler.is_compiling():
        warnings.warn(
            f"`past_key_values` is deprecated from transformers 5.24 on (this is {transformers.__version__})"
            ": pass the cache as `cache`",
            FutureWarning,
            stacklevel=3,
        )
    return past_key_values


def cache_field(cache):
    """``{name: cache}`` for a ModelOutput constructor, under the name the running release declares."""
    return {CACHE_FIELD: cache}


def untested_transformers_message(version):
    """A warning text when ``version`` lies outside what CI tested (another major, or below the oldest)."""
    oldest, running = Version(TESTED_TRANSFORMERS[0]), Version(version)
    if running.major == oldest.major and running >= oldest:
        return None
    return (
        f"scratchformer's model code was tested on transformers {TESTED_TRANSFORMERS[0]} to "
        f"{TESTED_TRANSFORMERS[1]}; this is transformers {version}, so outputs (generation above all) "
        f"may be wrong. Install a tested release: pip install '{TESTED_REQUIREMENT}'"
    )


_message = untested_transformers_message(transformers.__version__)
if _message is not None:
    warnings.warn(_message, stacklevel=2)  # module import runs once per process: the warning shows once
