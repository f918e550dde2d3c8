"""Peak memory of one encoder forward, or of one attention sublayer, every measurement in a fresh process.

tracemalloc does not see torch's allocations and the CPU allocator keeps no statistics, so we read the
kernel's peak resident set size: VmHWM in /proc/self/status, reset to the current RSS by writing "5" to
/proc/self/clear_refs just before the measured call. The figure is the growth of the peak RSS during that
one call (activations, attention scores, workspace), not counting the weights.

The measured call is the second of two identical ones: the first pages in the kernels' code and lets the
math libraries allocate the workspace they keep for that size, which a 16-token warm-up left to the
measured call (about 5 MiB at 8192 tokens, differing by a fraction of a MiB between attention patterns).
The figure is what every later forward of that length costs.

Fresh processes are cheap: ``serve()`` imports torch and the model once, then forks one child per request
(before any torch computation has started a thread pool in the server), so what one measurement left in
the heap cannot lower the next one.

The server runs with glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``): every tensor
buffer above that is its own mapping, returned to the kernel when freed, so the RSS follows the live
tensors. With glibc's default dynamic threshold, buffers up to 32 MiB come from a heap that keeps freed
memory, and the peak growth of a short input depended on what earlier allocations had left there.

Parts: "encoder", the whole encoder forward of a (1, length) input; "attention", the first encoder layer's
self-attention sublayer alone, on that input's embeddings, with the mask the encoder builds for it.
"""

import json
import os
import sys
from functools import partial
from pathlib import Path

import torch

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration
from scratchformer.modeling.masks_scratchformer import self_attention_mask

STATUS = Path("/proc/self/status")
PARTS = ("encoder", "attention")


def kib(field):
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {STATUS}")


def measure(config, length, threads, part="encoder"):
    """MiB by which the peak RSS grows during one no-grad call of ``part`` on a (1, length) input."""
    if part not in PARTS:
        raise ValueError(f"part={part!r}; expected one of {PARTS}")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ScratchformerForConditionalGeneration._from_config(
        ScratchformerConfig(**config), attn_implementation="sdpa"
    ).eval()
    encoder, ids = model.get_encoder(), torch.randint(4, config["vocab_size"], (1, length))
    with torch.no_grad():
        if part == "encoder":
            call = partial(encoder, input_ids=ids)
        else:  # "attention"
            hidden_states, rotary, positions = encoder.embed(ids, None)
            keep = self_attention_mask(positions, positions, causal=False, window=encoder.config.attention_window)
            call = partial(encoder.layers[0].self_attn, hidden_states, attention_mask=keep, position_embeddings=rotary)
        call()  # warm-up: kernels paged in, the math libraries' workspace for this size allocated
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            reset = True
        except OSError:
            reset = False  # then the peak since start minus the RSS now: an upper bound, said so in the JSON
        before = kib("VmRSS")
        call()
        after = kib("VmHWM")
    return {"peak_mib": max(after - before, 0) / 1024, "hwm_reset": reset}


def serve():
    """One JSON request per stdin line -> one JSON answer per stdout line, each computed in a forked child."""
    for line in sys.stdin:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                answer = measure(**json.loads(line))
            except Exception as error:  # noqa: BLE001 - reported to the parent
                answer = {"error": repr(error)}
            os.write(write, (json.dumps(answer) + "\n").encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
        sys.stdout.write(answer)
        sys.stdout.flush()


class PeakMemoryServer:
    """Client side: ``with PeakMemoryServer() as server: server.measure(config_dict, length, threads, part)``."""

    def __enter__(self):
        import subprocess

        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        return self

    def measure(self, config, length, threads, part="encoder"):
        request = {"config": config, "length": length, "threads": threads, "part": part}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"peak-memory child failed: {answer['error']}")
        return answer

    def __exit__(self, *exc):
        self.process.stdin.close()
        self.process.wait()


if __name__ == "__main__":
    serve()
