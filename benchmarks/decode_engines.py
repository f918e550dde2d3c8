"""Greedy decoding tokens/s of the ways to run the model, against BART and CTranslate2, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/decode_engines.py --out benchmarks/decode_engines.json

bench.py's dimensions and inputs (its flags apply), batch 1 and batch --batch, --new-tokens tokens each.
Every engine decodes as users call it: greedy, until </s> or --new-tokens tokens. The benchmark's model never
predicts </s> that early on its inputs, so each sequence gets exactly --new-tokens tokens; the script checks it
and stops, naming the engine, if one did not. --forced-length forces it instead (generate()'s min_new_tokens,
CTranslate2's min_decoding_length), which costs generate() two logits processors a step (a copy and a
torch.where over the (batch, vocab) scores each). Engines, each interleaved round by round with the others:

    bart-sdpa                       transformers' BartForConditionalGeneration.generate()
    scratchformer-sdpa              generate() with the default (dynamic) cache
    scratchformer-sdpa compiled     generate(cache_implementation="static", compile_config=
                                    decoding_compile_config("cpu")), the README's documented setting
                                    (compiled once, before the timed rounds)
    scratchformer-sdpa compiled,    the same on a copy of the model without decoding_compile_config's two thread
      inductor's thread defaults    settings (one-row matmuls as inductor loops, cpp.min_chunk_size): inductor's
                                    defaults, BLAS for every matmul and 512 elements per thread; what they do
    ctranslate2 fp32 / int8         the same scratchformer weights exported by training/ctranslate2_export.py,
                                    run by ctranslate2.Translator with as many threads as torch uses

The JSON also records, per engine, the share of sequences whose tokens equal scratchformer-sdpa's
(compiled and fp32 should be 1.0; int8 rounds the weights).
"""

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, models

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

from scratchformer import decoding_compile_config  # noqa: E402
from scratchformer.training.ctranslate2_export import export_ctranslate2, import_ctranslate2  # noqa: E402
from scratchformer.training.tokenizers import SPECIAL_TOKENS, wrap  # noqa: E402

REFERENCE = "bart-sdpa"


def vocabulary_tokenizer(size: int):
    """A word-level tokenizer naming ids 0..size-1 (CTranslate2 speaks tokens): <pad> <s> </s> <unk> t4 t5 ..."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + [f"t{i}" for i in range(len(SPECIAL_TOKENS), size)])}
    return wrap(Tokenizer(models.WordLevel(vocab, unk_token="<unk>")))


def engines(args, model, bart, tokenizer, ct2_folders, threads, forced_length):
    """name -> fn(input_ids) returning the generated ids (batch, new_tokens), without the start token."""
    ctranslate2 = import_ctranslate2()
    n = args.new_tokens
    fixed = dict(max_new_tokens=n, do_sample=False, num_beams=1, use_cache=True)
    if forced_length:
        fixed["min_new_tokens"] = n
    compile_config = decoding_compile_config("cpu")  # the README's documented setting
    thread_defaults = copy.deepcopy(compile_config)
    for setting in ("cpp.min_chunk_size", "post_grad_fusion_options"):
        del thread_defaults.options[setting]
    ablation = copy.deepcopy(model)  # generate() recompiles a model whose compile_config changed: one per config
    fns = {
        "bart-sdpa": lambda x: bart.generate(input_ids=x, **fixed)[:, 1:],
        "scratchformer-sdpa": lambda x: model.generate(input_ids=x, **fixed)[:, 1:],
        "scratchformer-sdpa compiled": lambda x: model.generate(
            input_ids=x, cache_implementation="static", compile_config=compile_config, **fixed
        )[:, 1:],
        "scratchformer-sdpa compiled, inductor's thread defaults": lambda x: ablation.generate(
            input_ids=x, cache_implementation="static", compile_config=thread_defaults, **fixed
        )[:, 1:],
    }
    for name, folder in ct2_folders.items():
        translator = ctranslate2.Translator(str(folder), device="cpu", inter_threads=1, intra_threads=threads)

        def run(x, translator=translator):  # ids -> the tokenizer's tokens -> CTranslate2 -> tokens -> ids
            sources = [tokenizer.convert_ids_to_tokens(row) for row in x.tolist()]
            results = translator.translate_batch(
                sources, beam_size=1, max_decoding_length=n, min_decoding_length=n if forced_length else 0
            )
            ids = [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]  # without </s>
            return torch.tensor([row + [tokenizer.eos_token_id] * (n - len(row)) for row in ids])  # ended: </s>

        fns[name] = run
    return fns


def check_full_length(outputs, n, eos_token_id):
    """Equal lengths or no comparison: every engine's every sequence has n tokens, none of them </s>."""
    for name, ids in outputs.items():
        if ids.shape[1] != n or (ids == eos_token_id).any():
            raise RuntimeError(
                f"{name} ended a sequence before {n} tokens, so the engines' lengths differ; rerun with --forced-length"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--forced-length", action="store_true", help="min = max new tokens in every engine")
    known, rest = parser.parse_known_args(argv)
    args = bench.parse_args(rest)
    torch.manual_seed(0)
    model = bench.build_scratchformer(args, "sdpa").eval()
    bart = bench.build_bart(args, "sdpa").eval()
    tokenizer = vocabulary_tokenizer(args.vocab)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as root:
        folders = {
            f"ctranslate2 {q or 'fp32'}": export_ctranslate2(model, tokenizer, Path(root) / (q or "fp32"), q)
            for q in (None, "int8")
        }
        fns = engines(args, model, bart, tokenizer, folders, threads, known.forced_length)
        results = {
            "machine": bench.machine(),
            "new_tokens": args.new_tokens,
            "src_len": args.src_len,
            "ctranslate2_threads": threads,
            "forced_length": known.forced_length,
            "batches": {},
        }
        for batch in (1, args.batch):
            x, _, _ = bench.inputs(args, batch, args.src_len, 1, seed=1)
            with torch.no_grad():
                outputs = {name: fn(x) for name, fn in fns.items()}  # also compiles, before any timing
                check_full_length(outputs, args.new_tokens, model.generation_config.eos_token_id)
                median, _ = bench.interleaved(
                    {name: (lambda fn=fn, x=x: fn(x)) for name, fn in fns.items()}, args.rounds, args.warmup
                )
            ours = outputs["scratchformer-sdpa"]
            results["batches"][f"batch_{batch}"] = {
                name: {
                    "seconds": median[name],
                    "tokens_per_s": batch * args.new_tokens / median[name],
                    "vs_bart_sdpa": median[REFERENCE] / median[name],
                    "vs_ctranslate2_fp32": median["ctranslate2 fp32"] / median[name],
                    "output_length": outputs[name].shape[1],
                    "same_tokens_as_scratchformer": (outputs[name] == ours).all(-1).float().mean().item(),
                }
                for name in fns
            }
    print(
        f"greedy decoding, {args.new_tokens} new tokens, source {args.src_len}, d_model {args.d_model}, "
        f"{args.layers}+{args.layers} layers, {threads} threads, "
        + ("forced length" if known.forced_length else "until </s> (none came)")
    )
    for batch, rows in results["batches"].items():
        print(f"  {batch}")
        for name, row in rows.items():
            print(
                f"    {name:<54} {row['tokens_per_s']:9.0f} tok/s   {row['vs_bart_sdpa']:5.2f}x BART   "
                f"{row['vs_ctranslate2_fp32']:5.2f}x CTranslate2 fp32   same tokens {row['same_tokens_as_scratchformer']:.2f}"
            )
    if known.out:
        known.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
