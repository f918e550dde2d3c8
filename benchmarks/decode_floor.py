"""Where a batch-1 greedy decoding step spends its time: generate() vs the model vs the bare tensor ops.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/decode_floor.py [--out decode_floor.json] [bench.py's dimension flags]

Times, interleaved round by round (median ms per generated token, batch 1, --new-tokens tokens):
    generate()        model.generate(), greedy, KV cache, min_new_tokens = max_new_tokens
    forward loop      the same decoding as a plain loop of cached forward calls + argmax (bench.greedy_forward_loop)
    functional floor  the same arithmetic written as bare torch calls on the model's own weights: no modules, no
                      cache objects, no ModelOutputs, no config reads; only the kernels a step cannot avoid
for scratchformer-sdpa and BART-sdpa (bench.py's models and dimensions). The floor decodes the same tokens as
the model (checked before timing), so floor + generate()'s own overhead bounds what any implementation of this
model inside generate() can reach on this machine: the JSON and the last printed line give that bound as a
ratio against BART's generate().
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def functional_decoder(model, input_ids):
    """A closure decoding greedily with bare torch calls on ``model``'s weights; returns the ids (1, 1 + n).

    Covers the benchmark's configuration only (full attention, dot + softmax, sinusoidal positions,
    post-norm, ReLU): it is a measuring stick, not a second implementation of the model.
    """
    config = model.config
    decoder = model.model.decoder
    heads, d_model = config.decoder_attention_heads, config.d_model
    head_dim = d_model // heads
    start = config.decoder_start_token_id

    def split(x, parts):  # (1, n, parts * d_model) -> parts x (1, h, n, d_head)
        return x.view(1, x.shape[1], parts, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def norm(x, residual_norm):
        ln = residual_norm.layer_norm
        return F.layer_norm(x, (d_model,), ln.weight, ln.bias, ln.eps)

    def run(new_tokens):
        memory = model.get_encoder()(input_ids=input_ids).last_hidden_state
        layers = []
        for layer in decoder.layers:
            cross = layer.encoder_attn
            key, value = split(F.linear(memory, cross.kv_proj.weight, cross.kv_proj.bias), 2)
            layers.append({"layer": layer, "cross": (key, value), "keys": None, "values": None})
        token = torch.tensor([[start]])
        generated = [token]
        for position in range(new_tokens):
            x = F.embedding(token, decoder.embed_tokens.weight) * decoder.embed_tokens.embed_scale
            x = x + decoder.embed_positions.table[position]
            for state in layers:
                layer = state["layer"]
                attn = layer.self_attn
                query, key, value = split(F.linear(x, attn.qkv_proj.weight, attn.qkv_proj.bias), 3)
                if state["keys"] is not None:
                    key, value = torch.cat([state["keys"], key], 2), torch.cat([state["values"], value], 2)
                state["keys"], state["values"] = key, value
                out = F.scaled_dot_product_attention(query, key, value).transpose(1, 2).reshape(1, 1, d_model)
                x = norm(x + F.linear(out, attn.out_proj.weight, attn.out_proj.bias), layer.self_attn_norm)
                cross = layer.encoder_attn
                (query,) = split(F.linear(x, cross.q_proj.weight, cross.q_proj.bias), 1)
                out = F.scaled_dot_product_attention(query, *state["cross"]).transpose(1, 2).reshape(1, 1, d_model)
                x = norm(x + F.linear(out, cross.out_proj.weight, cross.out_proj.bias), layer.encoder_attn_norm)
                ffn = layer.ffn
                hidden = F.linear(torch.relu(F.linear(x, ffn.fc1.weight, ffn.fc1.bias)), ffn.fc2.weight, ffn.fc2.bias)
                x = norm(x + hidden, layer.final_norm)
            token = F.linear(x, model.lm_head.weight).argmax(-1)
            generated.append(token)
        return torch.cat(generated, 1)  # (1, 1 + new_tokens), as bench.greedy_forward_loop returns them

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    known, rest = parser.parse_known_args(argv)
    args = bench.parse_args(rest)
    torch.manual_seed(0)
    models = {
        "scratchformer-sdpa": bench.build_scratchformer(args, "sdpa").eval(),
        "bart-sdpa": bench.build_bart(args, "sdpa").eval(),
    }
    x, _, _ = bench.inputs(args, 1, args.src_len, 1, seed=1)
    n = args.new_tokens
    fns = {}
    for name, model in models.items():
        fns[f"{name} generate()"] = lambda model=model: model.generate(
            input_ids=x, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1, use_cache=True
        )
        fns[f"{name} forward loop"] = bench.greedy_forward_loop(model, x, n)
    floor = functional_decoder(models["scratchformer-sdpa"], x)
    fns["scratchformer-sdpa functional floor"] = lambda: floor(n)
    with torch.no_grad():
        if not torch.equal(floor(n), bench.greedy_forward_loop(models["scratchformer-sdpa"], x, n)()):
            raise RuntimeError(
                "the functional floor decodes different tokens from the model: it is not the same computation"
            )
        median, _ = bench.interleaved(fns, args.rounds * 2, args.warmup)
    ms = {name: 1e3 * seconds / n for name, seconds in median.items()}
    overhead = {name: ms[f"{name} generate()"] - ms[f"{name} forward loop"] for name in models}
    bound = ms["bart-sdpa generate()"] / (ms["scratchformer-sdpa functional floor"] + overhead["scratchformer-sdpa"])
    results = {
        "machine": bench.machine(),
        "new_tokens": n,
        "ms_per_token": ms,
        "generate_overhead_ms": overhead,
        "best_possible_generate_vs_bart_sdpa": bound,
    }
    for name, value in ms.items():
        print(f"{name:<40}{value:>8.2f} ms/token")
    print("generate()'s own per-token overhead: " + ", ".join(f"{k} {v:.2f} ms" for k, v in overhead.items()))
    print(
        f"floor + scratchformer's generate() overhead vs BART-sdpa generate(): {bound:.2f}x (the best any "
        f"implementation of this model can do inside generate() here)"
    )
    if known.out:
        known.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
