#!/usr/bin/env python3
"""Independent reference for Loom's Transformer: the same model built from
PyTorch's own modules (nn.TransformerEncoderLayer with norm_first=True and
GELU, nn.LayerNorm, nn.Linear), loaded with Loom's exported initial weights,
run forward and backward on the same batch, then 10 AdamW steps.

    /usr/bin/python3 transformer_ref.py CASE.json IN.safetensors OUT.safetensors

CASE.json: {"channels","context","patch","d_model","heads","layers","ffn",
"horizon","targets","target_in":[...],"revin","channel_independent","batch",
"lr","betas":[b1,b2],"eps","weight_decay","clip_norm","steps"}.
IN.safetensors: the model's tensors under Loom's names, plus "batch.x"
[B,L,C] and "batch.y" (the training targets, laid out as Loom lays them).
OUT.safetensors: "out" (head outputs), "pred" (after reversible
normalization), "loss" [1], "grad.<name>" for every parameter, "losses"
[steps] (the loss before each step), "final.<name>" (weights after them).
"""
import json
import struct
import sys

import numpy as np
import torch
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    dt = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = e["data_offsets"]
        arr = np.frombuffer(body[b0:b1], dtype=dt[e["dtype"]]).reshape(e["shape"])
        out[name] = arr.copy()
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        cin = 1 if c["channel_independent"] else c["channels"]
        d, T = c["d_model"], c["context"] // c["patch"]
        self.embed = nn.Linear(c["patch"] * cin, d)
        self.pos = nn.Parameter(torch.zeros(T, d))
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(d, c["heads"], c["ffn"], dropout=0.0,
                                       activation="gelu", batch_first=True,
                                       norm_first=True, layer_norm_eps=1e-5)
            for _ in range(c["layers"])])
        self.norm = nn.LayerNorm(d, eps=1e-5)
        out = c["horizon"] * (1 if c["channel_independent"] else c["targets"])
        self.head = nn.Module()
        self.head.proj = nn.Linear(T * d, out)

    def forward(self, x):
        c = self.c
        B, L, C = x.shape
        if c["revin"]:
            mean = x.mean(dim=1, keepdim=True)
            std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-5)
            x = (x - mean) / std
        if c["channel_independent"]:
            x = x.permute(0, 2, 1).reshape(B * C, L, 1)
        S, cin, P = x.shape[0], x.shape[2], c["patch"]
        T = L // P
        h = self.embed(x.reshape(S, T, P * cin)) + self.pos
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        out = self.head.proj(h.reshape(S, -1))
        pred = out
        if c["revin"]:
            if c["channel_independent"]:
                pred = out * std.permute(0, 2, 1).reshape(B * C, 1) + \
                    mean.permute(0, 2, 1).reshape(B * C, 1)
            else:
                ti = torch.tensor(c["target_in"])
                k = torch.arange(out.shape[1]) % c["targets"]
                ch = ti[k]
                pred = out * std[:, 0, ch] + mean[:, 0, ch]
        return out, pred


def main():
    case = json.load(open(sys.argv[1]))
    tensors = read_safetensors(sys.argv[2])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = Model(case)
    state = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith("batch.")}
    missing, unexpected = model.load_state_dict(state, strict=True), None
    model.train()
    x = torch.from_numpy(tensors["batch.x"])
    y = torch.from_numpy(tensors["batch.y"])

    out, pred = model(x)
    loss = torch.mean((pred - y.reshape(pred.shape)) ** 2)
    loss.backward()
    result = {"out": out, "pred": pred, "loss": loss.reshape(1)}
    for name, p in model.named_parameters():
        result["grad." + name] = p.grad.detach().clone()

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "norm" in name or name == "pos"
         else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": case["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=case["lr"], betas=tuple(case["betas"]), eps=case["eps"])
    losses = []
    for _ in range(case["steps"]):
        opt.zero_grad()
        _, pred = model(x)
        loss = torch.mean((pred - y.reshape(pred.shape)) ** 2)
        losses.append(loss.item())
        loss.backward()
        if case["clip_norm"] > 0:
            nn.utils.clip_grad_norm_(model.parameters(), case["clip_norm"])
        opt.step()
    result["losses"] = torch.tensor(losses)
    for name, p in model.named_parameters():
        result["final." + name] = p.detach().clone()
    write_safetensors(sys.argv[3], result)


if __name__ == "__main__":
    main()
