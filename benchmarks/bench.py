"""Speed of scratchformer against transformers' BART and torch.nn.Transformer, same dimensions, same inputs.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench.py --out benchmarks/results.json

Models (built with equal d_model, heads, FFN width, layers, vocabulary, ReLU, dropout 0.1, tied embeddings):
    scratchformer-sdpa / scratchformer-eager   this project, attn_implementation="sdpa" / "eager"
    bart-sdpa / bart-eager                     transformers.BartForConditionalGeneration
    torch-transformer                          torch.nn.Transformer + embeddings + sinusoids + output projection

Sections of the JSON (and of the printed table), every ratio against bart-sdpa measured in this run:
    matmul_ceiling   fp32 torch.mm of two large square matrices: the machine's achievable FLOP/s, timed in
                     the training rounds, interleaved with the models' steps
    training         target tokens/s of forward + backward + (fused) AdamW step; FLOPs counted once per model with
                     torch.utils.flop_counter.FlopCounterMode (fwd + bwd), MFU = achieved FLOP/s / ceiling
    training_bf16    the same for ours (with the loss from stored logits, and fused with the head: lm_loss="fused")
                     and BART-sdpa in fp32, under bf16 autocast (accelerate's "bf16") and with bf16 weights + fp32
                     masters (the trainer's "bf16-weights"), with fp32 and bf16 matmul ceilings in the same rounds;
                     each MFU against the ceiling of the dtype it computes in
    dropout          one dropout call, forward + backward, on a training activation: the model's own
                     (16-bit decisions, four per 64-bit draw) against torch's F.dropout
    inference        encoder + decoder forward latency (no grad) on the training batch
    generation       greedy generate() tokens/s with the KV cache at batch 1 and at batch B,
                     min_new_tokens = max_new_tokens so every model produces exactly the same number of tokens
    decode_cost      time of one cached decoder step at growing positions (full vs linear attention)
    long_inputs      encoder forward time and peak memory at long lengths for full (sdpa), window and linear
                     attention, and the peak memory of the first layer's self-attention sublayer alone (where
                     the patterns differ); peak memory = growth of the peak resident set (VmHWM, reset through
                     /proc/self/clear_refs) during the second of two identical calls, in a fresh process per
                     measurement, median of --memory-repeats measurements (see peak_memory.py)
    compile          torch.compile (fullgraph: one graph, no breaks) speed-up of scratchformer-sdpa's inference
                     forward and training step

Every timing is the median over --rounds rounds after --warmup warm-up calls; the models are interleaved
round by round, so a burst of load from another process hits all of them alike.
"""

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import BartConfig, BartForConditionalGeneration
from transformers.utils import logging as hf_logging

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration
from scratchformer.modeling.compat_scratchformer import CACHE_FIELD, cache_field
from scratchformer.modeling.modeling_scratchformer import dropout as scratchformer_dropout
from scratchformer.training.bf16_weights import Bf16AdamW, Bf16Weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakMemoryServer  # noqa: E402

hf_logging.set_verbosity_error()
REFERENCE = "bart-sdpa"


# ------------------------------------------------------------------------------------------------ models


def scratchformer_kwargs(args, **overrides):
    return dict(
        vocab_size=args.vocab,
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        encoder_attention_heads=args.heads,
        decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn,
        decoder_ffn_dim=args.ffn,
        dropout=0.1,
        max_position_embeddings=args.max_positions,
        **overrides,
    )


def scratchformer_config(args, **overrides):
    return ScratchformerConfig(**scratchformer_kwargs(args, **overrides))


def build_scratchformer(args, implementation, **overrides):
    return ScratchformerForConditionalGeneration._from_config(
        scratchformer_config(args, **overrides), attn_implementation=implementation
    )


def build_bart(args, implementation):
    config = BartConfig(
        vocab_size=args.vocab,
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        encoder_attention_heads=args.heads,
        decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn,
        decoder_ffn_dim=args.ffn,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=args.max_positions,
        scale_embedding=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        tie_word_embeddings=True,
    )
    return BartForConditionalGeneration._from_config(config, attn_implementation=implementation)


class TorchTransformerSeq2Seq(nn.Module):
    """torch.nn.Transformer with what a seq2seq LM needs around it: shared embeddings * sqrt(d),
    sinusoidal positions, a causal decoder mask, a tied output projection and the cross-entropy loss."""

    def __init__(self, args):
        super().__init__()
        from scratchformer.modeling.positions_scratchformer import sinusoid_table

        self.embed = nn.Embedding(args.vocab, args.d_model, padding_idx=0)
        self.register_buffer("positions", sinusoid_table(args.max_positions, args.d_model), persistent=False)
        self.transformer = nn.Transformer(
            args.d_model, args.heads, args.layers, args.layers, args.ffn, dropout=0.1, batch_first=True
        )
        self.lm_head = nn.Linear(args.d_model, args.vocab, bias=False)
        self.lm_head.weight = self.embed.weight
        self.scale = math.sqrt(args.d_model)

    def embed_tokens(self, ids):
        return self.embed(ids) * self.scale + self.positions[: ids.shape[1]]

    def forward(self, input_ids, decoder_input_ids, labels=None, **kwargs):
        n = decoder_input_ids.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(n, device=input_ids.device)
        hidden = self.transformer(
            self.embed_tokens(input_ids), self.embed_tokens(decoder_input_ids), tgt_mask=causal, tgt_is_causal=True
        )
        logits = self.lm_head(hidden)
        loss = (
            None if labels is None else nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        )
        return loss, logits


def build_models(args):
    torch.manual_seed(0)
    return {
        "scratchformer-sdpa": build_scratchformer(args, "sdpa"),
        "scratchformer-eager": build_scratchformer(args, "eager"),
        "bart-sdpa": build_bart(args, "sdpa"),
        "bart-eager": build_bart(args, "eager"),
        "torch-transformer": TorchTransformerSeq2Seq(args),
    }


# ------------------------------------------------------------------------------------------------ timing


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns, rounds, warmup):
    """{name: median seconds}: every fn warmed up, then called once per round, the fns in turn."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}, times


def inputs(args, batch, src_len, tgt_len, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, args.vocab, (batch, src_len), generator=generator)
    labels = torch.randint(4, args.vocab, (batch, tgt_len), generator=generator)
    decoder_input_ids = torch.cat([torch.ones(batch, 1, dtype=torch.long), labels[:, :-1]], 1)
    return input_ids, decoder_input_ids, labels


def loss_of(model, input_ids, decoder_input_ids, labels):
    out = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, labels=labels)
    return out[0]


def matmul(args, dtype=torch.float32):
    """One torch.mm of two n x n matrices of `dtype`, as a closure to time alongside the models; its FLOPs."""
    n = args.matmul_size
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return (lambda: torch.mm(a, b)), 2 * n**3


def train_step(model, x, y_in, y, context=nullcontext, fused=True):
    """One forward + backward + AdamW step of ``model`` on a fixed batch, as a closure to time; the forward
    runs inside ``context()`` (e.g. autocast), ``fused`` is AdamW's (fused, as the trainer's, for every model)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)

    def step():
        with context():
            loss = loss_of(model, x, y_in, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_flops(model, x, y_in, y, context=nullcontext):
    """FLOPs of one forward + backward (torch.utils.flop_counter), the gradients dropped afterwards."""
    with FlopCounterMode(display=False) as counter:
        with context():
            loss = loss_of(model, x, y_in, y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def training(args, models):
    """Training steps of every model, and the matmul ceiling timed in the same rounds (so MFU compares
    figures taken under the same load): returns (ceiling, rows)."""
    x, y_in, y = inputs(args, args.batch, args.src_len, args.tgt_len)
    steps = {}
    flops = {}
    for name, model in models.items():
        steps[name] = train_step(model, x, y_in, y)
        flops[name] = step_flops(model, x, y_in, y)
    steps["matmul"], matmul_flops = matmul(args)
    median, _ = interleaved(steps, args.rounds, args.warmup)
    ceiling = {"size": args.matmul_size, "seconds": median["matmul"], "flops_per_s": matmul_flops / median["matmul"]}
    tokens = args.batch * args.tgt_len
    rows = {}
    for name in models:
        rows[name] = {
            "step_s": median[name],
            "target_tokens_per_s": tokens / median[name],
            "flops_per_step": flops[name],
            "flops_per_s": flops[name] / median[name],
            "mfu": flops[name] / median[name] / ceiling["flops_per_s"],
            "vs_bart_sdpa": median[REFERENCE] / median[name],
        }
    return ceiling, rows


# The models of the bf16 section: name -> (the model it copies, config changes). "scratchformer-fused" is ours with
# config.lm_loss="fused" (the head and the cross-entropy in one pass, modeling/loss_scratchformer.py).
BF16_MODELS = {
    "scratchformer-sdpa": ("scratchformer-sdpa", {}),
    "scratchformer-fused": ("scratchformer-sdpa", {"lm_loss": "fused"}),
    REFERENCE: (REFERENCE, {}),
}
OURS = "scratchformer-sdpa"  # "x our fp32" of every row: against this model in fp32, the loss from stored logits
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MODES = {"float32": "float32", "bfloat16": "bfloat16", "bf16-weights": "bfloat16"}  # mode -> the dtype it computes in


def autocast_bf16():
    """What accelerate's mixed_precision="bf16" runs the forward in."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


def bf16_weights_step(model, x, y_in, y):
    """One step the way the trainer's --mixed_precision bf16-weights takes it (training/bf16_weights.py): forward
    and backward on a bf16 copy, then Bf16AdamW's one pass: AdamW on the fp32 weights from the bf16 gradients, the
    copy refreshed (no clipping: the fp32 rows do not clip either); and the copy, to count FLOPs on."""
    model.train()
    compute = Bf16Weights(model).train()
    optimizer = Bf16AdamW(model.parameters(), lr=1e-4).tie(compute)

    def step():
        loss_of(compute, x, y_in, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, compute.module


def training_bf16(args, models):
    """Training steps in fp32, under bf16 autocast and with bf16 weights (fp32 masters), ours and BART's, with the
    fp32 and bf16 matmul ceilings, all timed in the same rounds: each row's MFU is against the ceiling of the dtype
    it computes in, its x BART against BART in the same mode."""
    x, y_in, y = inputs(args, args.batch, args.src_len, args.tgt_len)
    steps, flops = {}, {}
    for name, (source, changes) in BF16_MODELS.items():
        for mode in MODES:
            model = copy.deepcopy(models[source])
            for field, value in changes.items():
                setattr(model.config, field, value)
            if mode == "bf16-weights":
                steps[(name, mode)], low = bf16_weights_step(model, x, y_in, y)
                flops[(name, mode)] = step_flops(low, x, y_in, y)
            else:
                context = autocast_bf16 if mode == "bfloat16" else nullcontext
                steps[(name, mode)] = train_step(model, x, y_in, y, context)
                flops[(name, mode)] = step_flops(model, x, y_in, y, context)
    ceiling_flops = {}
    for dtype, torch_dtype in DTYPES.items():
        steps[("matmul", dtype)], ceiling_flops[dtype] = matmul(args, torch_dtype)
    median, _ = interleaved(steps, args.rounds, args.warmup)
    ceilings = {
        dtype: {
            "size": args.matmul_size,
            "seconds": median[("matmul", dtype)],
            "flops_per_s": ceiling_flops[dtype] / median[("matmul", dtype)],
        }
        for dtype in DTYPES
    }
    tokens = args.batch * args.tgt_len
    rows = {}
    for name in BF16_MODELS:
        rows[name] = {}
        for mode, dtype in MODES.items():
            step_s = median[(name, mode)]
            rows[name][mode] = {
                "step_s": step_s,
                "target_tokens_per_s": tokens / step_s,
                "flops_per_step": flops[(name, mode)],
                "flops_per_s": flops[(name, mode)] / step_s,
                "mfu": flops[(name, mode)] / step_s / ceilings[dtype]["flops_per_s"],
                "vs_bart_sdpa": median[(REFERENCE, mode)] / step_s,
            }
        rows[name]["bf16_speedup"] = median[(name, "float32")] / median[(name, "bfloat16")]
        rows[name]["bf16_weights_speedup"] = median[(name, "float32")] / median[(name, "bf16-weights")]
        rows[name]["bf16_weights_vs_bart_autocast"] = median[(REFERENCE, "bfloat16")] / median[(name, "bf16-weights")]
        rows[name]["bf16_weights_vs_scratchformer_fp32"] = median[(OURS, "float32")] / median[(name, "bf16-weights")]
    return {"matmul_ceiling": ceilings, "rows": rows}


def dropout_cost(args):
    """One dropout call (p = 0.1, forward + backward) on a (batch, tgt_len, d_model) activation: the
    model's ``dropout`` against torch's F.dropout, the 17 calls of a training step being 12% of it with
    the latter on this CPU."""
    x = torch.randn(args.batch, args.tgt_len, args.d_model, requires_grad=True)
    fns = {
        "F.dropout": lambda: F.dropout(x, 0.1, training=True).sum().backward(),
        "scratchformer dropout": lambda: scratchformer_dropout(x, 0.1).sum().backward(),
    }
    median, _ = interleaved(fns, args.rounds * 3, args.warmup)
    return {
        **{name: {"ms": 1e3 * seconds} for name, seconds in median.items()},
        "speedup": median["F.dropout"] / median["scratchformer dropout"],
    }


def inference(args, models):
    x, y_in, _ = inputs(args, args.batch, args.src_len, args.tgt_len)
    fns = {}
    for name, model in models.items():
        model.eval()
        fns[name] = lambda model=model: model(input_ids=x, decoder_input_ids=y_in)
    with torch.no_grad():
        median, _ = interleaved(fns, args.rounds, args.warmup)
    return {
        name: {"latency_ms": 1e3 * median[name], "vs_bart_sdpa": median[REFERENCE] / median[name]} for name in models
    }


def greedy_forward_loop(model, input_ids, new_tokens):
    """The model's own share of greedy decoding: encoder once, then one cached decoder forward + argmax per
    token, without generate()'s logits processors, stopping criteria and bookkeeping. The closure returns
    the ids (b, 1 + new_tokens), decoder start included."""

    def run():
        encoder_outputs = model.get_encoder()(input_ids=input_ids)
        token = torch.full((input_ids.shape[0], 1), model.config.decoder_start_token_id)
        past, tokens = None, [token]
        for _ in range(new_tokens):
            out = model(encoder_outputs=encoder_outputs, decoder_input_ids=token, **cache_field(past), use_cache=True)
            past, token = getattr(out, CACHE_FIELD), out.logits[:, -1:].argmax(-1)
            tokens.append(token)
        return torch.cat(tokens, 1)

    return run


def generation(args, models):
    """Greedy decoding with the KV cache; nn.Transformer has no cache and no generate(): left out.
    Per model: generate() tokens/s, and the ms per token of the same decoding as a plain forward loop."""
    result = {}
    for batch in (1, args.batch):
        x, _, _ = inputs(args, batch, args.src_len, 1, seed=1)
        fns = {}
        for name, model in models.items():
            if not hasattr(model, "generate"):
                continue
            model.eval()
            fns[name] = lambda model=model, x=x: model.generate(
                input_ids=x,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                num_beams=1,
                use_cache=True,
            )
            fns[name + " loop"] = greedy_forward_loop(model, x, args.new_tokens)
        with torch.no_grad():
            lengths = {name: fn().shape[1] for name, fn in fns.items() if not name.endswith(" loop")}
            median, _ = interleaved(fns, args.rounds, args.warmup)
        tokens = batch * args.new_tokens
        result[f"batch_{batch}"] = {
            name: {
                "seconds": median[name],
                "tokens_per_s": tokens / median[name],
                "ms_per_step": 1e3 * median[name] / args.new_tokens,
                "output_length": lengths[name],
                "vs_bart_sdpa": median[REFERENCE] / median[name],
                "forward_loop_ms_per_step": 1e3 * median[name + " loop"] / args.new_tokens,
                "forward_loop_vs_bart_sdpa": median[REFERENCE + " loop"] / median[name + " loop"],
            }
            for name in lengths
        }
    return result


def decode_cost(args):
    """ms of one cached decoder step (batch 1) after `position` tokens, full (sdpa) vs linear attention."""
    result = {}
    positions = args.decode_positions
    cfg = argparse.Namespace(**{**vars(args), "max_positions": max(positions) + 2 * args.rounds + 16})
    x, _, _ = inputs(args, 1, args.src_len, 1, seed=2)
    for pattern in ("full", "linear"):
        model = build_scratchformer(cfg, "sdpa", attention_pattern=pattern).eval()
        fns = {}
        with torch.no_grad():
            encoder_outputs = model.get_encoder()(input_ids=x)
            for position in positions:
                prefix = torch.randint(4, args.vocab, (1, position))
                past = getattr(
                    model(encoder_outputs=encoder_outputs, decoder_input_ids=prefix, use_cache=True), CACHE_FIELD
                )
                token = prefix[:, -1:]
                fns[position] = lambda past=past, token=token, model=model, encoder_outputs=encoder_outputs: model(
                    encoder_outputs=encoder_outputs, decoder_input_ids=token, **cache_field(past), use_cache=True
                )
            median, _ = interleaved(fns, args.rounds * 2, args.warmup)
        result[pattern] = {str(p): 1e3 * median[p] for p in positions}
    return result


LONG_PATTERNS = {
    "full": {},
    "window": {"attention_pattern": "window", "attention_window": None},
    "linear": {"attention_pattern": "linear"},
}


def long_overrides(pattern, args):
    overrides = dict(LONG_PATTERNS[pattern])
    if pattern == "window":
        overrides["attention_window"] = args.window
    return overrides


def long_kwargs(args, pattern):
    cfg = argparse.Namespace(**{**vars(args), "max_positions": max(args.long_lengths)})
    return scratchformer_kwargs(cfg, **long_overrides(pattern, args))


def encoder_for(args, pattern, length):
    torch.manual_seed(0)
    model = ScratchformerForConditionalGeneration._from_config(
        ScratchformerConfig(**long_kwargs(args, pattern)), attn_implementation="sdpa"
    ).eval()
    return model.get_encoder(), torch.randint(4, args.vocab, (1, length))


def peak_mib(server, args, pattern, length, part):
    """Median over --memory-repeats fresh-process measurements (one alone spreads by about +-0.1 MiB)."""
    answers = [
        server.measure(long_kwargs(args, pattern), length, torch.get_num_threads(), part=part)
        for _ in range(args.memory_repeats)
    ]
    return {
        "peak_mib": statistics.median(a["peak_mib"] for a in answers),
        "hwm_reset": all(a["hwm_reset"] for a in answers),
    }


def long_inputs(args):
    result = {pattern: {} for pattern in LONG_PATTERNS}
    with PeakMemoryServer() as server:
        memory = {
            (pattern, length): peak_mib(server, args, pattern, length, "encoder")
            for length in args.long_lengths
            for pattern in LONG_PATTERNS
        }
        attention = {
            (pattern, length): peak_mib(server, args, pattern, length, "attention")["peak_mib"]
            for length in args.long_lengths
            for pattern in LONG_PATTERNS
        }
    for length in args.long_lengths:
        fns = {}
        with torch.no_grad():
            for pattern in LONG_PATTERNS:
                encoder, ids = encoder_for(args, pattern, length)
                fns[pattern] = lambda encoder=encoder, ids=ids: encoder(input_ids=ids)
            median, _ = interleaved(fns, args.long_rounds, 1)
        for pattern in LONG_PATTERNS:
            result[pattern][str(length)] = {
                "forward_ms": 1e3 * median[pattern],
                **memory[pattern, length],
                "attention_peak_mib": attention[pattern, length],
            }
    for rows in result.values():
        first, last = str(args.long_lengths[0]), str(args.long_lengths[-1])
        rows["growth"] = {
            "lengths": [int(first), int(last)],
            "length_ratio": int(last) / int(first),
            "time_ratio": rows[last]["forward_ms"] / rows[first]["forward_ms"],
            "memory_ratio": rows[last]["peak_mib"] / max(rows[first]["peak_mib"], 1e-3),
            "attention_memory_ratio": rows[last]["attention_peak_mib"] / max(rows[first]["attention_peak_mib"], 1e-3),
        }
    last = str(args.long_lengths[-1])
    result["linear_vs_full_at_longest"] = {
        "length": int(last),
        "speedup": result["full"][last]["forward_ms"] / result["linear"][last]["forward_ms"],
        "memory_ratio": result["linear"][last]["peak_mib"] / max(result["full"][last]["peak_mib"], 1e-3),
        "attention_memory_ratio": (
            result["linear"][last]["attention_peak_mib"] / max(result["full"][last]["attention_peak_mib"], 1e-3)
        ),
    }
    return result


def compile_speedup(args):
    """torch.compile (inductor) of scratchformer-sdpa: inference forward and training step, eager vs compiled."""
    x, y_in, y = inputs(args, args.batch, args.src_len, args.tgt_len)
    torch.manual_seed(0)
    plain = build_scratchformer(args, "sdpa")
    torch.manual_seed(0)
    compiled = build_scratchformer(args, "sdpa")
    compiled.forward = torch.compile(compiled.forward, dynamic=False, fullgraph=True)  # a graph break fails
    start = time.perf_counter()
    with torch.no_grad():
        plain.eval(), compiled.eval()
        expected = plain(input_ids=x, decoder_input_ids=y_in).logits
        got = compiled(input_ids=x, decoder_input_ids=y_in).logits
        compile_s = time.perf_counter() - start
        max_diff = (got - expected).abs().max().item()
        fns = {
            "eager": lambda: plain(input_ids=x, decoder_input_ids=y_in),
            "compiled": lambda: compiled(input_ids=x, decoder_input_ids=y_in),
        }
        median, _ = interleaved(fns, args.rounds, args.warmup)
    result = {
        "inference": {
            "eager_ms": 1e3 * median["eager"],
            "compiled_ms": 1e3 * median["compiled"],
            "speedup": median["eager"] / median["compiled"],
            "compile_s": compile_s,
            "max_abs_diff": max_diff,
        }
    }
    steps = {}
    for name, model in (("eager", plain), ("compiled", compiled)):
        steps[name] = train_step(model, x, y_in, y)
    start = time.perf_counter()
    steps["compiled"]()
    compile_s = time.perf_counter() - start
    median, _ = interleaved(steps, args.rounds, args.warmup)
    result["training"] = {
        "eager_step_s": median["eager"],
        "compiled_step_s": median["compiled"],
        "speedup": median["eager"] / median["compiled"],
        "compile_s": compile_s,
    }
    return result


# ------------------------------------------------------------------------------------------------ report


def machine():
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import transformers

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "dtype": "float32",
        "load_average": os.getloadavg(),
    }


def table(results):
    lines = []
    names = list(results["training"])
    lines.append(
        f"matmul ceiling: {results['matmul_ceiling']['flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"(torch.mm {results['matmul_ceiling']['size']}^2, fp32, timed in the training rounds)"
    )
    lines.append("")
    header = f"{'model':<22}{'train tok/s':>12}{'x BART':>8}{'MFU':>7}{'fwd ms':>9}{'x BART':>8}"
    for batch in results["generation"]:
        header += f"{'gen ' + batch.replace('batch_', 'b') + ' tok/s':>16}{'x BART':>8}"
    lines.append(header)
    for name in names:
        t, i = results["training"][name], results["inference"][name]
        row = (
            f"{name:<22}{t['target_tokens_per_s']:>12.0f}{t['vs_bart_sdpa']:>8.2f}{100 * t['mfu']:>6.0f}%"
            f"{i['latency_ms']:>9.1f}{i['vs_bart_sdpa']:>8.2f}"
        )
        for batch in results["generation"].values():
            g = batch.get(name)
            row += f"{g['tokens_per_s']:>16.0f}{g['vs_bart_sdpa']:>8.2f}" if g else f"{'-':>16}{'-':>8}"
        lines.append(row)
    lines.append("")
    bf16 = results["training_bf16"]
    ceilings = bf16["matmul_ceiling"]
    lines.append(
        f"bf16 autocast (accelerate's mixed_precision='bf16'), ceilings in the same rounds: fp32 "
        f"{ceilings['float32']['flops_per_s'] / 1e9:.0f} GFLOP/s, bf16 {ceilings['bfloat16']['flops_per_s'] / 1e9:.0f} GFLOP/s"
    )
    for name, row in bf16["rows"].items():
        lines.append(
            f"  {name:<20} fp32 {row['float32']['target_tokens_per_s']:>7.0f} tok/s (MFU {100 * row['float32']['mfu']:.0f}%)"
            f"  bf16 {row['bfloat16']['target_tokens_per_s']:>7.0f} tok/s (MFU {100 * row['bfloat16']['mfu']:.0f}% of bf16)"
            f"  = {row['bf16_speedup']:.2f}x its fp32, {row['bfloat16']['vs_bart_sdpa']:.2f}x BART bf16"
        )
    lines.append("bf16 weights, fp32 masters (the trainer's --mixed_precision bf16-weights), same rounds:")
    for name, row in bf16["rows"].items():
        w = row["bf16-weights"]
        lines.append(
            f"  {name:<20} {w['target_tokens_per_s']:>7.0f} tok/s (MFU {100 * w['mfu']:.0f}% of bf16)"
            f"  = {row['bf16_weights_speedup']:.2f}x its fp32, {row['bf16_weights_vs_scratchformer_fp32']:.2f}x {OURS} fp32,"
            f" {row['bf16_weights_vs_bart_autocast']:.2f}x BART autocast, {w['vs_bart_sdpa']:.2f}x BART bf16-weights"
        )
    lines.append("")
    for batch, rows in results["generation"].items():
        lines.append(
            f"greedy decoding, {batch.replace('_', ' ')}, ms per token, generate() / forward loop alone "
            "(x BART): "
            + "  ".join(
                f"{name} {g['ms_per_step']:.2f} / {g['forward_loop_ms_per_step']:.2f} "
                f"({g['forward_loop_vs_bart_sdpa']:.2f})"
                for name, g in rows.items()
            )
        )
    d = results["dropout"]
    lines.append(
        f"dropout p=0.1, forward + backward, {results['settings']['batch']}x{results['settings']['tgt_len']}x"
        f"{results['settings']['d_model']}: F.dropout {d['F.dropout']['ms']:.2f} ms, scratchformer "
        f"{d['scratchformer dropout']['ms']:.2f} ms ({d['speedup']:.2f}x)"
    )
    lines.append("")
    decode = results["decode_cost"]
    lines.append(
        "cached decoder step, batch 1 (ms) at position: "
        + "  ".join(
            f"{pattern} " + " ".join(f"{p}:{ms:.2f}" for p, ms in rows.items()) for pattern, rows in decode.items()
        )
    )
    lines.append("")
    long = results["long_inputs"]
    lengths = [k for k in long["full"] if k != "growth"]
    lines.append(
        f"{'encoder, batch 1':<18}"
        + "".join(f"{n + ' ms':>10}{n + ' MiB':>10}" for n in lengths)
        + f"{'time x':>9}{'mem x':>8}"
    )
    for pattern in LONG_PATTERNS:
        rows = long[pattern]
        lines.append(
            f"{pattern:<18}"
            + "".join(f"{rows[n]['forward_ms']:>10.1f}{rows[n]['peak_mib']:>10.1f}" for n in lengths)
            + f"{rows['growth']['time_ratio']:>9.2f}{rows['growth']['memory_ratio']:>8.2f}"
        )
    lines.append(f"{'attention sublayer':<18}" + "".join(f"{n + ' MiB':>10}" for n in lengths) + f"{'mem x':>8}")
    for pattern in LONG_PATTERNS:
        rows = long[pattern]
        lines.append(
            f"{pattern:<18}"
            + "".join(f"{rows[n]['attention_peak_mib']:>10.1f}" for n in lengths)
            + f"{rows['growth']['attention_memory_ratio']:>8.2f}"
        )
    lv = long["linear_vs_full_at_longest"]
    lines.append(
        f"(time x / mem x: longest vs shortest length; linear vs full at {lv['length']}: "
        f"{lv['speedup']:.2f}x faster, {lv['memory_ratio']:.2f}x the encoder's memory, "
        f"{lv['attention_memory_ratio']:.2f}x the attention sublayer's)"
    )
    c = results["compile"]
    lines.append("")
    lines.append(
        f"torch.compile scratchformer-sdpa: inference {c['inference']['eager_ms']:.1f} -> "
        f"{c['inference']['compiled_ms']:.1f} ms ({c['inference']['speedup']:.2f}x), training step "
        f"{1e3 * c['training']['eager_step_s']:.0f} -> {1e3 * c['training']['compiled_step_s']:.0f} ms "
        f"({c['training']['speedup']:.2f}x)"
    )
    m = results["machine"]
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
        f"OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}, torch {m['torch']}, transformers {m['transformers']}"
    )
    return "\n".join(lines)


def parse_with_quick(parser, argv, quick):
    """parser.parse_args(argv); with --quick, every setting in ``quick`` not given on the command line."""
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.dest for a in parser._actions if any(opt in (argv or sys.argv[1:]) for opt in a.option_strings)}
        for key, value in quick.items():
            if key not in given:
                setattr(args, key, value)
    return args


def positive_int(text):
    """argparse type: an integer >= 1 (a dimension, a count of rounds)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def add_common_flags(parser, *, batch, src_len, tgt_len, d_model, heads, ffn, layers, vocab, rounds, warmup):
    """The flags every benchmark script shares (output, --quick, model and batch dimensions), with its defaults."""
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fast smoke run: tiny dims, few rounds")
    parser.add_argument("--batch", type=positive_int, default=batch)
    parser.add_argument("--src-len", type=positive_int, default=src_len)
    parser.add_argument("--tgt-len", type=positive_int, default=tgt_len)
    parser.add_argument("--d-model", type=positive_int, default=d_model)
    parser.add_argument("--heads", type=positive_int, default=heads)
    parser.add_argument("--ffn", type=positive_int, default=ffn)
    parser.add_argument("--layers", type=positive_int, default=layers, help="encoder layers = decoder layers")
    parser.add_argument("--vocab", type=positive_int, default=vocab)
    parser.add_argument("--rounds", type=positive_int, default=rounds)
    parser.add_argument("--warmup", type=int, default=warmup)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(
        parser,
        batch=32,
        src_len=64,
        tgt_len=64,
        d_model=256,
        heads=4,
        ffn=1024,
        layers=3,
        vocab=8000,
        rounds=7,
        warmup=2,
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sequence")
    parser.add_argument(
        "--long-lengths", type=lambda s: [int(x) for x in s.split(",")], default=[512, 2048, 4096, 8192]
    )
    parser.add_argument("--long-rounds", type=int, default=3)
    parser.add_argument("--memory-repeats", type=int, default=3, help="peak-memory measurements per figure (median)")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--decode-positions", type=lambda s: [int(x) for x in s.split(",")], default=[16, 256, 1024])
    parser.add_argument("--matmul-size", type=int, default=2048)
    quick = dict(
        batch=2,
        src_len=8,
        tgt_len=8,
        d_model=32,
        heads=4,
        ffn=64,
        layers=1,
        vocab=100,
        new_tokens=4,
        rounds=2,
        warmup=1,
        long_lengths=[64, 128],
        long_rounds=1,
        memory_repeats=1,
        window=8,
        decode_positions=[4, 16],
        matmul_size=128,
    )
    args = parse_with_quick(parser, argv, quick)
    args.max_positions = max(512, args.src_len, args.tgt_len + args.new_tokens)
    return args


def section(name, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    print(f"[{name}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    return result


def main(argv=None):
    args = parse_args(argv)
    results = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    models = build_models(args)
    results["matmul_ceiling"], results["training"] = section("training", training, args, models)
    results["training_bf16"] = section("training_bf16", training_bf16, args, models)
    results["dropout"] = section("dropout", dropout_cost, args)
    results["inference"] = section("inference", inference, args, models)
    results["generation"] = section("generation", generation, args, models)
    del models
    results["decode_cost"] = section("decode_cost", decode_cost, args)
    results["long_inputs"] = section("long_inputs", long_inputs, args)
    results["compile"] = section("compile", compile_speedup, args)
    results["machine"]["load_average_after"] = os.getloadavg()
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
