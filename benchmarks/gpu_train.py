"""Mixed-precision training throughput on an accelerator: scratchformer vs BART, same dimensions, same batch.

    python benchmarks/gpu_train.py --out gpu_train.json            # on a GPU: bf16 autocast, the issue's large config
    python benchmarks/gpu_train.py --quick --out quick.json         # smoke run on whatever device there is, tiny dims

Defaults (issue 5, section 3): d_model 1024, 16 heads, FFN 4096, 6+6 layers, vocab 8000, batch 128 x (source 256,
target 256) = 32,768 target tokens per step, bf16 autocast over fp32 weights, fused AdamW where the device has it.
scratchformer-fused is scratchformer-sdpa with lm_loss="fused" (the trainer's default).
Per model: target tokens/s of forward + backward + AdamW step, model FLOPs utilisation against the device's bf16
matmul ceiling (torch.mm of two --matmul-size squares, timed in the same rounds), and peak memory of a step
(torch.cuda.max_memory_allocated; CPU: not measured). scratchformer's steps run inside
``sdpa_kernel(SDPBackend.FLASH_ATTENTION)``: a call that cannot take the flash kernel raises, so a finished run
shows that every attention call of the model used it. BART runs with torch's default kernel choice, and the
script reports whether BART's attention can run flash-only too.
"""

import argparse
import json
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

REFERENCE = "bart-sdpa"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model, batch, device, dtype, flash_only):
    """bench.train_step under autocast, synchronised; flash_only: sdpa may use the flash kernel and nothing else."""

    @contextmanager
    def context():
        kernels = sdpa_kernel(SDPBackend.FLASH_ATTENTION) if flash_only else nullcontext()
        with torch.autocast(device.type, dtype=dtype), kernels:
            yield

    step = bench.train_step(model, *batch, context=context, fused=device.type == "cuda")

    def synchronized_step():
        step()
        synchronize(device)

    return synchronized_step


def can_run_flash_only(step):
    try:
        step()
        return True
    except RuntimeError as error:  # "No available kernel" from sdpa
        return f"no: {str(error).splitlines()[0][:200]}"


def peak_memory_mib(step, device):
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    step()
    return torch.cuda.max_memory_allocated(device) / 2**20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_common_flags(
        parser,
        batch=128,
        src_len=256,
        tgt_len=256,
        d_model=1024,
        heads=16,
        ffn=4096,
        layers=6,
        vocab=8000,
        rounds=10,
        warmup=3,
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--matmul-size", type=int, default=8192)
    quick = dict(
        batch=2,
        src_len=16,
        tgt_len=16,
        d_model=32,
        heads=4,
        ffn=64,
        layers=1,
        vocab=100,
        rounds=2,
        warmup=1,
        matmul_size=256,
    )
    args = bench.parse_with_quick(parser, argv, quick)
    args.max_positions = max(512, args.src_len, args.tgt_len)
    return args


def main(argv=None):
    args = parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    models = {
        "scratchformer-sdpa": bench.build_scratchformer(args, "sdpa").to(device),
        "scratchformer-fused": bench.build_scratchformer(args, "sdpa", lm_loss="fused").to(device),
        "bart-sdpa": bench.build_bart(args, "sdpa").to(device),
    }
    batch = tuple(t.to(device) for t in bench.inputs(args, args.batch, args.src_len, args.tgt_len))
    autocast = lambda: torch.autocast(device.type, dtype=dtype)  # noqa: E731
    flops = {name: bench.step_flops(model, *batch, context=autocast) for name, model in models.items()}
    steps = {
        name: train_step(model, batch, device, dtype, flash_only=name.startswith("scratchformer"))
        for name, model in models.items()
    }
    bart_flash_only = can_run_flash_only(train_step(models[REFERENCE], batch, device, dtype, flash_only=True))
    memory = {name: peak_memory_mib(step, device) for name, step in steps.items()}

    n = args.matmul_size
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    steps["matmul"] = lambda: (torch.mm(a, b), synchronize(device))
    median, _ = bench.interleaved(steps, args.rounds, args.warmup)
    ceiling = 2 * n**3 / median["matmul"]
    tokens = args.batch * args.tgt_len
    rows = {
        name: {
            "step_s": median[name],
            "target_tokens_per_s": tokens / median[name],
            "flops_per_step": flops[name],
            "mfu": flops[name] / median[name] / ceiling,
            "peak_memory_mib": memory[name],
            "vs_bart_sdpa": median[REFERENCE] / median[name],
        }
        for name in models
    }
    machine = bench.machine() | {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype,
    }
    results = {
        "machine": machine,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "matmul_ceiling": {"size": n, "dtype": args.dtype, "flops_per_s": ceiling},
        "training": rows,
        "scratchformer_flash_only": True,
        "bart_flash_only": bart_flash_only,
    }

    print(f"{args.dtype} matmul ceiling: {ceiling / 1e12:.1f} TFLOP/s (torch.mm {n}^2 on {machine['device']})")
    print(f"{'model':<22}{'train tok/s':>13}{'x BART':>8}{'MFU':>7}{'peak MiB':>10}")
    for name, row in rows.items():
        peak = "-" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f}"
        print(
            f"{name:<22}{row['target_tokens_per_s']:>13.0f}{row['vs_bart_sdpa']:>8.2f}{100 * row['mfu']:>6.0f}%"
            f"{peak:>10}"
        )
    print(f"scratchformer: every sdpa call ran flash-only; BART flash-only: {bart_flash_only}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
