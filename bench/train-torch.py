#!/usr/bin/python3
"""train-torch — the PyTorch side of bench/train: the same model, batch and
training step as bench/train-loom.c, in PyTorch (Debian's python3-torch).

    /usr/bin/python3 train-torch.py SHAPE THREADS STEPS

The model is tests/reference/transformer_ref.py's (the one Loom's parity
test compares against): a linear patch embedding over patch × channels,
learned positions, nn.TransformerEncoderLayer(norm_first=True, gelu,
batch_first, dropout 0) × layers, a final LayerNorm, and a linear forecast
head over the flattened encoder output; AdamW (weight decay on weights only,
as Loom), MSE.  revin and channel independence are off, so their branches
are left out here.

Threads: torch.set_num_threads(THREADS) sets ATen's OpenMP threads, but this
torch multiplies through OpenBLAS (BLAS_INFO=generic → libblas.so.3 →
OpenBLAS, pthread build), whose own thread count does not follow it.  Loom
sets OpenBLAS's count to its thread count (lk_pool_create), so this script
does the same through ctypes, and both sides run on THREADS threads.
bench/train also sets OMP_WAIT_POLICY=PASSIVE (for both sides): with
libgomp's default, idle OpenMP workers spin on the cores OpenBLAS's threads
need, and at 2 threads this PyTorch ran 1.5-3× slower than with it.

Prints one JSON line, as train-loom: steps/s, seconds, FLOPs per step (the
same analytic count), parameters, peak RSS (resource.getrusage ru_maxrss,
KiB; it includes the interpreter and torch's libraries: base_rss_kib is the
high-water mark before the model was built).
"""
import ctypes
import ctypes.util
import json
import resource
import sys
import time

import torch
from torch import nn

SHAPES = {
    # SPEC §11.1
    "small": dict(channels=1, context=168, patch=24, d_model=64, heads=4, layers=2,
                  ffn=256, horizon=24, batch=64),
    "medium": dict(channels=4, context=336, patch=16, d_model=128, heads=8, layers=4,
                   ffn=512, horizon=96, batch=32),
    "large": dict(channels=4, context=512, patch=8, d_model=256, heads=8, layers=4,
                  ffn=1024, horizon=96, batch=16),
}


class Model(nn.Module):
    """transformer_ref.Model without the revin/channel-independent branches."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d, T = c["d_model"], c["context"] // c["patch"]
        self.embed = nn.Linear(c["patch"] * c["channels"], d)
        self.pos = nn.Parameter(torch.zeros(T, d))
        nn.init.uniform_(self.pos, -0.02, 0.02)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(d, c["heads"], c["ffn"], dropout=0.0,
                                       activation="gelu", batch_first=True,
                                       norm_first=True, layer_norm_eps=1e-5)
            for _ in range(c["layers"])])
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Module()
        self.head.proj = nn.Linear(T * d, c["horizon"] * c["channels"])

    def forward(self, x):
        c = self.c
        B, L, C = x.shape
        P = c["patch"]
        T = L // P
        h = self.embed(x.reshape(B, T, P * C)) + self.pos
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        return self.head.proj(h.reshape(B, -1))


def step_flops(c, out_dim):
    """The analytic count of train-loom.c's step_flops (see there)."""
    S, T = c["batch"], c["context"] // c["patch"]
    N, D, F = S * T, c["d_model"], c["ffn"]
    layer = 2 * N * D * 3 * D + 2 * (2 * S * T * T * D) + 2 * N * D * D + 2 * (2 * N * D * F)
    embed = 2 * N * c["patch"] * c["channels"] * D
    head = 2 * S * (T * D) * out_dim
    return 3 * (c["layers"] * layer + embed + head) - embed


def openblas_threads(n):
    """Set the process's OpenBLAS thread count (the library torch loaded);
    returns the count OpenBLAS reports, or None if it is not OpenBLAS."""
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas"), "libblas.so.3"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_set_num_threads(ctypes.c_int(n))
            return int(lib.openblas_get_num_threads())
        except (OSError, AttributeError):
            continue
    return None


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in SHAPES:
        sys.exit("usage: train-torch.py small|medium|large THREADS STEPS")
    c = SHAPES[sys.argv[1]]
    threads, steps = int(sys.argv[2]), int(sys.argv[3])
    warmup = min(10, max(2, steps // 10))
    torch.set_num_threads(threads)
    blas_threads = openblas_threads(threads)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    torch.manual_seed(1234)
    model = Model(c)
    model.train()
    out_dim = c["horizon"] * c["channels"]
    x = torch.randn(c["batch"], c["context"], c["channels"])
    y = torch.randn(c["batch"], out_dim)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "norm" in name or name == "pos"
         else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    params = sum(p.numel() for p in model.parameters())

    ph = [0.0] * 5
    t0 = None
    for it in range(warmup + steps):
        if it == warmup:
            t0 = time.perf_counter()
        t = [time.perf_counter()]
        out = model(x)
        t.append(time.perf_counter())
        loss = torch.mean((out - y) ** 2)
        t.append(time.perf_counter())
        opt.zero_grad()
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        if it >= warmup:
            for k in range(5):
                ph[k] += t[k + 1] - t[k]
    total = time.perf_counter() - t0
    flops = step_flops(c, out_dim)
    print(json.dumps({
        "impl": "torch", "shape": sys.argv[1], "threads": threads, "steps": steps,
        "warmup": warmup, "seconds": round(total, 6), "steps_per_s": round(steps / total, 4),
        "flops_per_step": flops, "gflops": round(flops * steps / total * 1e-9, 3),
        "params": params, "loss": float(loss.item()),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "base_rss_kib": base_rss, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "openblas_threads": blas_threads,
        "phases_s": {"forward": round(ph[0], 6), "loss": round(ph[1], 6),
                     "zero_grad": round(ph[2], 6), "backward": round(ph[3], 6),
                     "adamw": round(ph[4], 6)}}))


if __name__ == "__main__":
    main()
