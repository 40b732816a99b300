#!/usr/bin/python3
"""The PyTorch side of bench/run.sh: one GPT-2 training step, timed.

The model is GPT-2 as Hugging Face's GPT2LMHeadModel computes it (pre-LN blocks,
Conv1D weights [in,out], tanh GELU, tied LM head), written out in plain torch
so the benchmark needs only Debian's python3-torch. The step is what tapegrad's
`tapegrad bench` times: forward, cross-entropy loss, backward, AdamW update,
zero_grad, in eval-free training mode with dropout 0 (both sides skip dropout so
the work is identical).

Prints one JSON line: {"impl": "pytorch", "ms_per_step": ..., "tokens_per_s": ...,
"peak_rss_mb": ...}.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], -1)


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = Conv1D(3 * C, C)
        self.c_proj = Conv1D(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = Conv1D(4 * C, C)
        self.mlp_proj = Conv1D(C, 4 * C)

    def forward(self, x, causal):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = [t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v)]
        w = (q @ k.transpose(-1, -2)) / math.sqrt(C // self.NH)
        w = torch.where(causal[:T, :T], w, torch.finfo(w.dtype).min)
        a = (torch.softmax(w, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, V, P, C, L, NH):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(P, C)
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.register_buffer("causal", torch.tril(torch.ones(P, P, dtype=torch.bool)))
        nn.init.normal_(self.wte.weight, std=0.02)  # Hugging Face's init, as tapegrad's
        nn.init.normal_(self.wpe.weight, std=0.02)

    def forward(self, ids, labels):
        T = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x, self.causal)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = GPT2(a.vocab, a.positions, a.embd, a.layers, a.heads)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = model(ids, ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        if s >= a.warmup:
            times.append(t1 - t0)
    ms = 1000 * sorted(times)[len(times) // 2]
    print(json.dumps({"impl": "pytorch", "ms_per_step": round(ms, 2),
                      "tokens_per_s": round(a.batch * a.seq / (ms / 1000), 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "loss": float(loss)}))


if __name__ == "__main__":
    main()
