"""bf16-weights against fp32 training under three OpenMP thread settings: where bf16's speed-up goes on 2 cores.

    python benchmarks/bf16_threads.py --out benchmarks/bf16_threads.json   # ~1 min on 2 cores; sets each policy itself

One fresh process per setting (libgomp reads its wait policy once, when torch loads it), each timing, interleaved
round by round, the training step of scratchformer-sdpa with the fused loss (lm_loss="fused", bench.py's dims)
in fp32 and with --mixed_precision bf16-weights (bench.bf16_weights_step), and one parallel region: a torch.mul
of 2^16 fp32 elements, the smallest op torch splits over threads (grain 32,768), which costs about what waking
a thread costs. Settings:

    passive   OMP_WAIT_POLICY=PASSIVE, 2 threads: idle threads sleep at once, and every parallel region wakes
              them (the test suite's and bench.py's setting, which lets processes share the CPU)
    spinning  OMP_WAIT_POLICY unset, 2 threads: torch's default, idle threads spin ~300k rounds before sleeping,
              so back-to-back ops find them awake (one process alone on the machine)
    1-thread  OMP_NUM_THREADS=1: no other thread to wake, nor to share the work with

Per setting: ms per step, bf16-weights' speed-up over fp32, and the region's µs. Across settings:
wake-up ms per step = passive - spinning, and that over (region µs passive - spinning) estimates how many
parallel regions a step opens. The absolute ms of different processes are less steady than the ratio inside one.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

POLICIES = {  # name -> environment changes for the child process (None: removed)
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": None},
    "spinning": {"OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": None},
    "1-thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "GOMP_SPINCOUNT": None},
}
SETTINGS = ("quick", "batch", "src_len", "tgt_len", "d_model", "heads", "ffn", "layers", "vocab", "rounds", "warmup")
REGION_ELEMENTS = 2**16  # two grains: the smallest tensor torch's elementwise ops split over 2 threads
REGION_CALLS = 100  # one timed call of the region closure runs this many


def parallel_region():
    """A closure running REGION_CALLS elementwise ops that each open one parallel region and do little else."""
    x, out = torch.randn(REGION_ELEMENTS), torch.empty(REGION_ELEMENTS)

    def run():
        for _ in range(REGION_CALLS):
            torch.mul(x, 2.0, out=out)

    return run


def measure(args):
    """This process's figures: {"ms": {step: median ms}, "region_us": ..., "torch_threads": ..., "env": ...}."""
    torch.manual_seed(0)
    model = bench.build_scratchformer(args, "sdpa", lm_loss="fused")
    x, y_in, y = bench.inputs(args, args.batch, args.src_len, args.tgt_len)
    steps = {
        "float32": bench.train_step(model, x, y_in, y),
        "bf16-weights": bench.bf16_weights_step(copy.deepcopy(model), x, y_in, y)[0],
        "region": parallel_region(),
    }
    median, _ = bench.interleaved(steps, args.rounds, args.warmup)
    return {
        "torch_threads": torch.get_num_threads(),
        "env": {key: os.environ.get(key) for key in sorted(POLICIES["passive"])},  # as this process saw it
        "ms": {name: 1e3 * median[name] for name in ("float32", "bf16-weights")},
        "region_us": 1e6 * median["region"] / REGION_CALLS,
    }


def child_env(changes):
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_policy(name, argv):
    """measure() in a fresh process under POLICIES[name]; its result with the environment it ran under."""
    changes = POLICIES[name]
    done = subprocess.run(
        [sys.executable, __file__, "--child", *argv],
        env=child_env(changes),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {name} process failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["env"] != changes:
        raise RuntimeError(f"the {name} process ran under {result['env']}, not {changes}")
    result["bf16_weights_speedup"] = result["ms"]["float32"] / result["ms"]["bf16-weights"]
    print(
        f"{name:<9} {result['torch_threads']} threads  fp32 {result['ms']['float32']:6.1f} ms  bf16-weights "
        f"{result['ms']['bf16-weights']:6.1f} ms  = {result['bf16_weights_speedup']:.2f}x   one parallel region "
        f"{result['region_us']:5.1f} us",
        flush=True,
    )
    return result


def wakeups(policies):
    """Per step and dtype: passive - spinning ms, and the parallel regions that time is worth."""
    passive, spinning = policies["passive"], policies["spinning"]
    region_us = passive["region_us"] - spinning["region_us"]
    out = {"region_wakeup_us": region_us}
    for mode in ("float32", "bf16-weights"):
        ms = passive["ms"][mode] - spinning["ms"][mode]
        out[mode] = {"ms_per_step": ms, "regions_per_step": 1e3 * ms / region_us}
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    known, rest = parser.parse_known_args(argv)
    args = bench.parse_args(rest)
    if known.child:
        print(json.dumps(measure(args)))
        return
    policies = {name: run_policy(name, rest) for name in POLICIES}
    waking = wakeups(policies)
    results = {
        "machine": bench.machine(),
        "settings": {key: getattr(args, key) for key in SETTINGS},
        "policies": policies,
        "wakeups": waking,
    }
    print(
        f"waking a thread: {waking['region_wakeup_us']:.0f} us a region; per step, passive - spinning: "
        + ", ".join(
            f"{mode} {waking[mode]['ms_per_step']:.1f} ms (~{waking[mode]['regions_per_step']:.0f} regions)"
            for mode in ("float32", "bf16-weights")
        )
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
