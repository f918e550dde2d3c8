"""benchmarks/bench.py runs end to end (quick mode, tiny dims) and writes every section; no timing assertions."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
MODELS = {"scratchformer-sdpa", "scratchformer-eager", "bart-sdpa", "bart-eager", "torch-transformer"}


def test_quick_benchmark_writes_every_section(tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)], check=True, env=env, timeout=600,
                   capture_output=True, text=True)
    results = json.loads(out.read_text())
    assert {"machine", "settings", "matmul_ceiling", "training", "dropout", "inference", "generation",
            "decode_cost", "long_inputs", "compile"} <= set(results)
    assert results["machine"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert results["matmul_ceiling"]["flops_per_s"] > 0
    assert results["dropout"]["speedup"] > 0
    assert set(results["training"]) == MODELS and set(results["inference"]) == MODELS
    for row in results["training"].values():
        assert {"target_tokens_per_s", "mfu", "flops_per_step", "vs_bart_sdpa"} <= set(row)
    assert set(results["generation"]) == {"batch_1", "batch_2"}
    for rows in results["generation"].values():
        assert set(rows) == MODELS - {"torch-transformer"}  # nn.Transformer has no KV cache / generate()
        assert len({row["output_length"] for row in rows.values()}) == 1  # equal lengths forced
        assert all(row["forward_loop_ms_per_step"] > 0 for row in rows.values())
    assert set(results["decode_cost"]) == {"full", "linear"}
    long = results["long_inputs"]
    for pattern in ("full", "window", "linear"):
        assert {"64", "128", "growth"} <= set(long[pattern])
        assert {"forward_ms", "peak_mib", "attention_peak_mib"} <= set(long[pattern]["64"])
    assert "speedup" in long["linear_vs_full_at_longest"]
    compiled = results["compile"]
    assert compiled["inference"]["max_abs_diff"] < 1e-3 and compiled["training"]["speedup"] > 0


def test_decode_floor_decodes_the_models_tokens_and_reports_the_bound(tmp_path):
    """decode_floor.py refuses to time a floor that decodes other tokens than the model (it raises), so a
    finished run means the bare-ops loop is the same computation."""
    out = tmp_path / "floor.json"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    subprocess.run([sys.executable, str(BENCH.parent / "decode_floor.py"), "--quick", "--out", str(out)], check=True,
                   env=env, timeout=600, capture_output=True, text=True)
    results = json.loads(out.read_text())
    assert set(results["ms_per_token"]) == {"scratchformer-sdpa generate()", "scratchformer-sdpa forward loop",
                                            "bart-sdpa generate()", "bart-sdpa forward loop",
                                            "scratchformer-sdpa functional floor"}
    assert results["best_possible_generate_vs_bart_sdpa"] > 0


def test_gpu_training_benchmark_runs_on_the_cpu_in_quick_mode(tmp_path):
    """gpu_train.py (bf16 autocast, scratchformer flash-only) runs end to end on whatever device there is."""
    out = tmp_path / "gpu.json"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    subprocess.run([sys.executable, str(BENCH.parent / "gpu_train.py"), "--quick", "--out", str(out)], check=True,
                   env=env, timeout=600, capture_output=True, text=True)
    results = json.loads(out.read_text())
    assert set(results["training"]) == {"scratchformer-sdpa", "bart-sdpa"}
    assert results["machine"]["dtype"] == "bfloat16" and results["scratchformer_flash_only"] is True
    for row in results["training"].values():
        assert row["target_tokens_per_s"] > 0 and row["flops_per_step"] > 0
