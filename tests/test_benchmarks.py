"""The benchmark scripts run end to end (quick mode, tiny dims) and write the JSON that
benchmarks/results_schema.json describes; no timing assertions (speed is never asserted).

Each file is checked against its schema (types, required keys, no unknown keys, meaningful ranges: an MFU in
(0, 1], a peak-memory reset that took place), then for what a schema cannot say: every derived figure
equals what the figures it comes from in the same file give (tokens/s = tokens / step time, "vs_bart_sdpa" =
bart-sdpa's time / this row's time, a speed-up = the ratio of the two times next to it, MFU = FLOP/s /
the ceiling), the settings agree with the sections they shape, and the counted FLOPs are those of the
benchmarked architecture, worked out from its dimensions. The committed benchmarks/results.json (the
README's figures) gets the same checks.

The schema is a JSON file next to the scripts rather than a dict in this test: it documents the output
format where the scripts and their results are, in a form any JSON Schema tool reads (jsonschema is not
installed here, so ``schema_errors`` below implements the few keywords it uses, and refuses any other).
"""

import copy
import json
import math
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from scratchformer.modeling.attention_scratchformer import EXPLICIT_16_BIT_KEYS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCH = BENCHMARKS / "bench.py"
SCHEMA = json.loads((BENCHMARKS / "results_schema.json").read_text())
COMMITTED = BENCHMARKS / "results.json"
REFERENCE = "bart-sdpa"


# ---------------------------------------------------------------------------------- a tiny validator


KEYWORDS = {
    "$comment",
    "$ref",
    "allOf",
    "anyOf",
    "type",
    "const",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "patternProperties",
    "additionalProperties",
    "minProperties",
}
TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
}


def same(a, b):
    """JSON equality: true is not 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def schema_errors(instance, schema, path="$"):
    """["path: what is wrong"] for ``instance`` against ``schema`` (JSON Schema, the keywords in KEYWORDS;
    $ref resolves in SCHEMA)."""
    if schema is True or schema is False:
        return [] if schema else [f"{path}: not allowed here"]
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"{path}: schema keywords {sorted(unknown)} are not implemented by this validator")
    errors = []
    if "$ref" in schema:
        target = SCHEMA
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        errors += schema_errors(instance, target, path)
    for sub in schema.get("allOf", []):
        errors += schema_errors(instance, sub, path)
    if "anyOf" in schema and all(schema_errors(instance, sub, path) for sub in schema["anyOf"]):
        errors.append(f"{path}: {instance!r} matches none of {schema['anyOf']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](instance) for t in types):
            return errors + [f"{path}: {instance!r} is not of type {schema['type']}"]
    if "const" in schema and not same(instance, schema["const"]):
        errors.append(f"{path}: {instance!r} != {schema['const']!r}")
    if "enum" in schema and not any(same(instance, value) for value in schema["enum"]):
        errors.append(f"{path}: {instance!r} not one of {schema['enum']}")
    if TYPES["number"](instance):
        for keyword, holds in (
            ("minimum", lambda x, b: x >= b),
            ("maximum", lambda x, b: x <= b),
            ("exclusiveMinimum", lambda x, b: x > b),
            ("exclusiveMaximum", lambda x, b: x < b),
        ):
            if keyword in schema and not holds(instance, schema[keyword]):
                errors.append(f"{path}: {instance!r} violates {keyword} {schema[keyword]}")
    if isinstance(instance, str) and "pattern" in schema and not re.search(schema["pattern"], instance):
        errors.append(f"{path}: {instance!r} does not match {schema['pattern']!r}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0) or len(instance) > schema.get("maxItems", math.inf):
            errors.append(f"{path}: {len(instance)} items")
        for i, item in enumerate(instance):
            errors += schema_errors(item, schema.get("items", True), f"{path}[{i}]")
    if isinstance(instance, dict):
        errors += [f"{path}: no {key!r}" for key in schema.get("required", []) if key not in instance]
        if len(instance) < schema.get("minProperties", 0):
            errors.append(f"{path}: {len(instance)} keys")
        properties, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        for key, value in instance.items():
            matched = [sub for pattern, sub in patterns.items() if re.search(pattern, key)]
            if key in properties:
                matched.append(properties[key])
            for sub in matched or [schema.get("additionalProperties", True)]:
                errors += schema_errors(value, sub, f"{path}.{key}")
    return errors


def assert_matches_schema(results, script):
    errors = schema_errors(results, SCHEMA[script])
    assert not errors, f"{script}'s JSON does not match benchmarks/results_schema.json:\n" + "\n".join(errors[:30])


# ------------------------------------------------------------------------------ cross-field checks


def assert_ratio(value, numerator, denominator, what):
    assert math.isclose(value, numerator / denominator, rel_tol=1e-9), f"{what}: {value} != {numerator} / {denominator}"


def step_flops(s):
    """FLOPs (2 per multiply-add) of the matmuls of one training step of the benchmarked encoder-decoder, from
    its dimensions: forward + backward = 3 x forward (the backward multiplies by the input and by the weight).
    Returns (all of them, the share of the attention scores Q K^T and A' V in them)."""
    b, d, f = s["batch"], s["d_model"], s["ffn"]
    src, tgt = b * s["src_len"], b * s["tgt_len"]  # tokens

    def linear(tokens, fan_in, fan_out):
        return 2 * tokens * fan_in * fan_out

    encoder = linear(src, d, 3 * d) + linear(src, d, d) + linear(src, d, f) + linear(src, f, d)  # qkv, W^O, FFN
    decoder = (
        linear(tgt, d, 3 * d)
        + linear(tgt, d, d)  # self-attention
        + linear(tgt, d, d)
        + linear(src, d, 2 * d)
        + linear(tgt, d, d)  # cross: q, [k; v] of the source, W^O
        + linear(tgt, d, f)
        + linear(tgt, f, d)
    )
    # Q K^T and A' V: 2 x (2 b n_q n_k d) for encoder self-, decoder self- and cross-attention
    attention = 4 * b * d * (s["src_len"] ** 2 + s["tgt_len"] ** 2 + s["tgt_len"] * s["src_len"])
    forward = s["layers"] * (encoder + decoder + attention) + linear(tgt, d, s["vocab"])  # + the LM head
    return 3 * forward, 3 * s["layers"] * attention


def counted_flops(settings, kernel):
    """What torch.utils.flop_counter.FlopCounterMode reports for one step: eager attention is plain matmuls
    (``step_flops``); a fused sdpa kernel is counted by its own formula, which charges its backward 5 matmuls
    (it recomputes the scores) instead of 4, or not at all where torch registers none (its CPU flash kernel)."""
    total, attention = step_flops(settings)
    if kernel == "eager":
        return {total}
    return {total, total - attention, total + attention // 6}  # plain, uncounted, fused: (2 + 5) / (2 + 4)


def assert_training_rows(rows, settings, ceiling_flops_per_s, same_kernels=True):
    """tokens/s, vs_bart_sdpa and MFU of each row follow from its step time, bart-sdpa's and the ceiling; the
    FLOPs are the architecture's as torch counts them, and with ``same_kernels`` (every model left to
    the same kernel choice) the same for scratchformer as for BART."""
    reference = rows[REFERENCE]
    assert reference["vs_bart_sdpa"] == 1.0
    for name, row in rows.items():
        assert_ratio(row["target_tokens_per_s"], settings["batch"] * settings["tgt_len"], row["step_s"], name)
        assert_ratio(row["vs_bart_sdpa"], reference["step_s"], row["step_s"], name)
        assert_ratio(row["vs_bart_sdpa"], row["target_tokens_per_s"], reference["target_tokens_per_s"], name)
        flops_per_s = row.get("flops_per_s", row["flops_per_step"] / row["step_s"])  # gpu_train.py reports none
        assert_ratio(flops_per_s, row["flops_per_step"], row["step_s"], name)
        assert_ratio(row["mfu"], flops_per_s, ceiling_flops_per_s, name)
        expected = counted_flops(settings, "eager" if name.endswith("-eager") else "sdpa")
        assert row["flops_per_step"] in expected, (name, row["flops_per_step"], expected)
    for kernel in ("sdpa", "eager"):  # same dimensions, same kernel: the same work as BART
        if same_kernels and f"bart-{kernel}" in rows:
            assert rows[f"scratchformer-{kernel}"]["flops_per_step"] == rows[f"bart-{kernel}"]["flops_per_step"]


def check_bench(results):
    assert_matches_schema(results, "bench.py")
    s = results["settings"]
    assert s["max_positions"] == max(512, s["src_len"], s["tgt_len"] + s["new_tokens"])
    ceiling = results["matmul_ceiling"]
    assert ceiling["size"] == s["matmul_size"]
    assert_ratio(ceiling["flops_per_s"], 2 * ceiling["size"] ** 3, ceiling["seconds"], "matmul ceiling")
    assert_training_rows(results["training"], s, ceiling["flops_per_s"])
    bf16 = results["training_bf16"]
    for dtype, dtype_ceiling in bf16["matmul_ceiling"].items():
        assert dtype_ceiling["size"] == s["matmul_size"]
        assert_ratio(dtype_ceiling["flops_per_s"], 2 * dtype_ceiling["size"] ** 3, dtype_ceiling["seconds"], dtype)
    for mode, dtype in {"float32": "float32", "bfloat16": "bfloat16", "bf16-weights": "bfloat16"}.items():
        rows = {name: row[mode] for name, row in bf16["rows"].items()}  # against its dtype's ceiling, its mode's BART
        # in 16 bits our sdpa runs the explicit form (counted matmuls) over EXPLICIT_16_BIT_KEYS, BART the flash kernel
        explicit = [dtype == "bfloat16" and keys in EXPLICIT_16_BIT_KEYS for keys in (s["src_len"], s["tgt_len"])]
        assert_training_rows(rows, s, bf16["matmul_ceiling"][dtype]["flops_per_s"], same_kernels=not any(explicit))
        if all(explicit):
            assert {rows[name]["flops_per_step"] for name in rows if name.startswith("scratchformer")} == {
                step_flops(s)[0]
            }
    bart = bf16["rows"]["bart-sdpa"]
    for name, row in bf16["rows"].items():
        assert_ratio(row["bf16_speedup"], row["float32"]["step_s"], row["bfloat16"]["step_s"], f"{name} bf16")
        weights = row["bf16-weights"]["step_s"]
        assert_ratio(row["bf16_weights_speedup"], row["float32"]["step_s"], weights, f"{name} bf16-weights")
        assert_ratio(row["bf16_weights_vs_bart_autocast"], bart["bfloat16"]["step_s"], weights, f"{name} vs autocast")
        ours = bf16["rows"]["scratchformer-sdpa"]["float32"]["step_s"]
        assert_ratio(row["bf16_weights_vs_scratchformer_fp32"], ours, weights, f"{name} vs our fp32")

    dropout = results["dropout"]
    assert_ratio(dropout["speedup"], dropout["F.dropout"]["ms"], dropout["scratchformer dropout"]["ms"], "dropout")

    inference = results["inference"]
    for name, row in inference.items():
        assert_ratio(row["vs_bart_sdpa"], inference[REFERENCE]["latency_ms"], row["latency_ms"], f"inference {name}")

    generation = results["generation"]
    assert set(generation) == {"batch_1", f"batch_{s['batch']}"}
    for key, rows in generation.items():
        batch, reference = int(key.removeprefix("batch_")), rows[REFERENCE]
        for name, row in rows.items():
            what = f"generation {key} {name}"
            assert row["output_length"] == 1 + s["new_tokens"], what  # min_new_tokens forced, + decoder start
            assert_ratio(row["tokens_per_s"], batch * s["new_tokens"], row["seconds"], what)
            assert_ratio(row["ms_per_step"], 1e3 * row["seconds"], s["new_tokens"], what)
            assert_ratio(row["vs_bart_sdpa"], reference["seconds"], row["seconds"], what)
            assert_ratio(
                row["forward_loop_vs_bart_sdpa"],
                reference["forward_loop_ms_per_step"],
                row["forward_loop_ms_per_step"],
                what,
            )

    for pattern, rows in results["decode_cost"].items():
        assert list(rows) == [str(p) for p in s["decode_positions"]], pattern

    long = results["long_inputs"]
    lengths = [str(n) for n in s["long_lengths"]]
    first, last = lengths[0], lengths[-1]
    for pattern in ("full", "window", "linear"):
        rows, growth = long[pattern], long[pattern]["growth"]
        assert list(rows) == lengths + ["growth"], pattern
        assert growth["lengths"] == [int(first), int(last)]
        assert_ratio(growth["length_ratio"], int(last), int(first), pattern)
        assert_ratio(growth["time_ratio"], rows[last]["forward_ms"], rows[first]["forward_ms"], pattern)
        for key, field in (("memory_ratio", "peak_mib"), ("attention_memory_ratio", "attention_peak_mib")):
            assert_ratio(growth[key], rows[last][field], max(rows[first][field], 1e-3), f"{pattern} {key}")
    versus = long["linear_vs_full_at_longest"]
    assert versus["length"] == int(last)
    assert_ratio(versus["speedup"], long["full"][last]["forward_ms"], long["linear"][last]["forward_ms"], "linear")
    for key, field in (("memory_ratio", "peak_mib"), ("attention_memory_ratio", "attention_peak_mib")):
        assert_ratio(versus[key], long["linear"][last][field], max(long["full"][last][field], 1e-3), key)

    compiled = results["compile"]
    assert_ratio(
        compiled["inference"]["speedup"],
        compiled["inference"]["eager_ms"],
        compiled["inference"]["compiled_ms"],
        "compile inference",
    )
    assert_ratio(
        compiled["training"]["speedup"],
        compiled["training"]["eager_step_s"],
        compiled["training"]["compiled_step_s"],
        "compile training",
    )


def check_decode_floor(results):
    assert_matches_schema(results, "decode_floor.py")
    ms, overhead = results["ms_per_token"], results["generate_overhead_ms"]
    for name in ("scratchformer-sdpa", "bart-sdpa"):
        assert math.isclose(
            overhead[name], ms[f"{name} generate()"] - ms[f"{name} forward loop"], rel_tol=1e-9, abs_tol=1e-12
        ), name
    assert_ratio(
        results["best_possible_generate_vs_bart_sdpa"],
        ms["bart-sdpa generate()"],
        ms["scratchformer-sdpa functional floor"] + overhead["scratchformer-sdpa"],
        "bound",
    )


def check_gpu_train(results):
    assert_matches_schema(results, "gpu_train.py")
    s, machine, ceiling = results["settings"], results["machine"], results["matmul_ceiling"]
    assert machine["dtype"] == s["dtype"] == ceiling["dtype"]
    assert (machine["device"] == "cpu") == (s["device"] == "cpu")
    assert ceiling["size"] == s["matmul_size"]
    assert s["max_positions"] == max(512, s["src_len"], s["tgt_len"])
    # on CUDA scratchformer runs flash-only and BART takes torch's choice, which may be counted differently
    assert_training_rows(results["training"], s, ceiling["flops_per_s"], same_kernels=s["device"] == "cpu")
    for name, row in results["training"].items():  # peak memory is measured on CUDA only
        assert (row["peak_memory_mib"] is None) == (s["device"] == "cpu"), name


def assert_machine_is_this_one(machine):
    assert machine["OMP_WAIT_POLICY"] == "PASSIVE"
    assert (machine["torch"], machine["transformers"]) == (torch.__version__, transformers.__version__)
    assert machine["python"] == platform.python_version() and machine["cores"] == os.cpu_count()


def run_quick(script, out):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out)],
        check=True,
        env=env,
        timeout=600,
        capture_output=True,
        text=True,
    )
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------- tests


def test_quick_benchmark_writes_every_section(tmp_path):
    results = run_quick("bench.py", tmp_path / "results.json")
    check_bench(results)
    assert results["settings"]["quick"] is True
    assert_machine_is_this_one(results["machine"])


def test_committed_results_match_the_schema():
    """The README's figures: benchmarks/results.json as the current bench.py writes it, every ratio consistent."""
    results = json.loads(COMMITTED.read_text())
    check_bench(results)
    assert results["settings"]["quick"] is False and results["machine"]["OMP_WAIT_POLICY"] == "PASSIVE"


def test_decode_floor_decodes_the_models_tokens_and_reports_the_bound(tmp_path):
    """decode_floor.py refuses to time a floor that decodes other tokens than the model (it raises), so a
    finished run means the bare-ops loop is the same computation."""
    results = run_quick("decode_floor.py", tmp_path / "floor.json")
    check_decode_floor(results)
    assert results["new_tokens"] == 4  # bench.py's --quick setting, which decode_floor.py takes over
    assert_machine_is_this_one(results["machine"])


def test_gpu_training_benchmark_runs_on_the_cpu_in_quick_mode(tmp_path):
    """gpu_train.py (bf16 autocast, scratchformer flash-only) runs end to end on whatever device there is."""
    out = tmp_path / "gpu.json"
    results = run_quick("gpu_train.py", out)
    check_gpu_train(results)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    assert results["machine"]["device"] == device and results["settings"]["device"] == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    assert results["machine"]["dtype"] == "bfloat16" and results["settings"]["out"] == str(out)
    assert_machine_is_this_one(results["machine"])


def _set(path, value):
    def mutate(results):
        *parents, key = path
        target = results
        for parent in parents:
            target = target[parent]
        if value is KeyError:
            del target[key]
        else:
            target[key] = value(target[key]) if callable(value) else value

    return mutate


BROKEN = {  # one defect each, in a copy of the committed results: schema ones, then cross-field ones
    "missing section": _set(["compile"], KeyError),
    "unknown key": _set(["dropout", "F.dropout", "us"], 3.0),
    "mfu above 1": _set(["training", "bart-eager", "mfu"], 1.5),
    "string for a number": _set(["inference", "bart-sdpa", "latency_ms"], "1.2"),
    "memory not reset": _set(["long_inputs", "window", "512", "hwm_reset"], False),
    "ratio off": _set(["training", "scratchformer-sdpa", "vs_bart_sdpa"], lambda x: x * 1.01),
    "speed-up off": _set(["compile", "training", "speedup"], lambda x: 1 / x),
    "generated length": _set(["generation", "batch_1", "bart-eager", "output_length"], lambda x: x + 1),
    "flops miscounted": _set(["training", "torch-transformer", "flops_per_step"], lambda x: x + 2),
    "decode positions": _set(["decode_cost", "linear", "99"], 1.0),
}


@pytest.mark.parametrize("defect", list(BROKEN))
def test_the_checks_reject_broken_results(defect):
    """The validator and the cross-field checks are not vacuous: each defect alone fails them."""
    results = copy.deepcopy(json.loads(COMMITTED.read_text()))
    BROKEN[defect](results)
    with pytest.raises(AssertionError):
        check_bench(results)


def check_decode_engines(results):
    assert_matches_schema(results, "decode_engines.py")
    n = results["new_tokens"]
    for batch, rows in results["batches"].items():
        size = int(batch.removeprefix("batch_"))
        for name, row in rows.items():
            assert row["output_length"] == n, name  # min = max new tokens: every engine decodes as many
            assert math.isclose(row["tokens_per_s"], size * n / row["seconds"], rel_tol=1e-9), name
            assert_ratio(row["vs_bart_sdpa"], rows["bart-sdpa"]["seconds"], row["seconds"], name)
            assert_ratio(row["vs_ctranslate2_fp32"], rows["ctranslate2 fp32"]["seconds"], row["seconds"], name)
        # the same computation: compiled static decoding and CTranslate2 fp32 decode scratchformer's tokens
        assert rows["scratchformer-sdpa"]["same_tokens_as_scratchformer"] == 1.0
        assert rows["scratchformer-sdpa compiled"]["same_tokens_as_scratchformer"] == 1.0
        assert rows["scratchformer-sdpa compiled, inductor's thread defaults"]["same_tokens_as_scratchformer"] == 1.0
        assert rows["ctranslate2 fp32"]["same_tokens_as_scratchformer"] == 1.0


def test_decode_engines_compare_the_same_decoding(tmp_path):
    pytest.importorskip("ctranslate2")
    results = run_quick("decode_engines.py", tmp_path / "engines.json")
    check_decode_engines(results)
    assert_machine_is_this_one(results["machine"])


def test_committed_decode_engines_results_hold_together():
    check_decode_engines(json.loads((BENCHMARKS / "decode_engines.json").read_text()))


def check_bf16_threads(results):
    assert_matches_schema(results, "bf16_threads.py")
    policies, wakeups = results["policies"], results["wakeups"]
    # each child ran under the environment of its name, and torch took the thread count from it
    assert policies["passive"]["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert policies["spinning"]["env"]["OMP_WAIT_POLICY"] is None
    assert all(row["env"]["GOMP_SPINCOUNT"] is None for row in policies.values())
    for row in policies.values():
        assert row["torch_threads"] == int(row["env"]["OMP_NUM_THREADS"])
    assert [row["torch_threads"] for row in policies.values()] == [2, 2, 1]
    for name, row in policies.items():
        assert_ratio(row["bf16_weights_speedup"], row["ms"]["float32"], row["ms"]["bf16-weights"], name)
    region = policies["passive"]["region_us"] - policies["spinning"]["region_us"]
    assert math.isclose(wakeups["region_wakeup_us"], region, rel_tol=1e-9)
    for mode in ("float32", "bf16-weights"):
        ms = policies["passive"]["ms"][mode] - policies["spinning"]["ms"][mode]
        assert math.isclose(wakeups[mode]["ms_per_step"], ms, rel_tol=1e-9), mode
        assert math.isclose(wakeups[mode]["regions_per_step"], 1e3 * ms / region, rel_tol=1e-9), mode


def test_bf16_threads_runs_each_policy_in_its_own_process(tmp_path):
    """bf16_threads.py starts one process per thread setting; the child reports the environment it saw, so a
    setting that did not reach it (or a thread count torch did not take) fails here."""
    results = run_quick("bf16_threads.py", tmp_path / "threads.json")
    check_bf16_threads(results)
    assert results["settings"]["quick"] is True and results["settings"]["batch"] == 2  # bench.py's --quick dims


def test_committed_bf16_threads_results_hold_together():
    results = json.loads((BENCHMARKS / "bf16_threads.json").read_text())
    check_bf16_threads(results)
    assert results["settings"]["quick"] is False
    for defect in (
        _set(["policies", "1-thread", "bf16_weights_speedup"], lambda x: x * 1.01),
        _set(["policies", "spinning", "torch_threads"], 1),
        _set(["wakeups", "bf16-weights", "regions_per_step"], lambda x: x + 1),
    ):
        broken = copy.deepcopy(results)
        defect(broken)
        with pytest.raises(AssertionError):
            check_bf16_threads(broken)


@pytest.mark.parametrize("flag", ["--batch", "--d-model", "--rounds"])
def test_a_dimension_below_one_is_refused_before_anything_runs(flag):
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", flag, "0"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2  # argparse's usage error, before any model is built
    assert f"argument {flag}: must be an integer >= 1, got 0" in done.stderr
