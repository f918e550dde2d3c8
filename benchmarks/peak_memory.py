"""Peak memory of one encoder forward, every measurement in a fresh process.

tracemalloc does not see torch's allocations and the CPU allocator keeps no statistics, so we read the
kernel's peak resident set size: VmHWM in /proc/self/status, reset to the current RSS by writing "5" to
/proc/self/clear_refs just before the forward. The figure is the growth of the peak RSS during that one
forward (activations, attention scores, workspace), not counting the weights.

Fresh processes are cheap: ``serve()`` imports torch and the model once, then forks one child per request
(before any torch computation has started a thread pool in the server), so no earlier forward can have
left freed memory in the child's heap for the measured one to reuse.

The server runs with glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``): every tensor
buffer above that is its own mapping, returned to the kernel when freed, so the RSS follows the live
tensors. With glibc's default dynamic threshold, buffers up to 32 MiB come from a heap that keeps freed
memory, and the peak growth of a short input depended on what earlier allocations had left there.
"""

import json
import os
import sys
from pathlib import Path

import torch

from scratchformer import ScratchformerConfig, ScratchformerForConditionalGeneration

STATUS = Path("/proc/self/status")


def kib(field):
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {STATUS}")


def measure(config, length, threads):
    """MiB by which the peak RSS grows during one no-grad encoder forward of a (1, length) input."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ScratchformerForConditionalGeneration._from_config(ScratchformerConfig(**config),
                                                               attn_implementation="sdpa").eval()
    encoder, ids = model.get_encoder(), torch.randint(4, config["vocab_size"], (1, length))
    with torch.no_grad():
        encoder(input_ids=ids[:, :16])  # load kernels, start the thread pool
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            reset = True
        except OSError:
            reset = False  # then the peak since start minus the RSS now: an upper bound, said so in the JSON
        before = kib("VmRSS")
        encoder(input_ids=ids)
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
    """Client side: ``with PeakMemoryServer() as server: server.measure(config_dict, length, threads)``."""

    def __enter__(self):
        import subprocess

        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
        self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        return self

    def measure(self, config, length, threads):
        self.process.stdin.write(json.dumps({"config": config, "length": length, "threads": threads}) + "\n")
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
