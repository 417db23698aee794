#!/usr/bin/python3
"""PyTorch eager training-speed baseline for starmoe: the same DeepSeek-V3 model, float32.

Usage (Debian's python3-torch 1.13 is installed for /usr/bin/python3 only):
  /usr/bin/python3 bench/pytorch_dsv3.py --config configs/bench-6m.json --batch 8 --seq 128 \
      --reps 5 --warmup 1 --threads 1 --blas-threads 2 [--format json]
  /usr/bin/python3 bench/pytorch_dsv3.py --check [--config tests/fixtures/...json]

Threads: --threads sets ATen's intra-op (OpenMP) pool with torch.set_num_threads; --blas-threads
sets OpenBLAS's own pthread pool, which OpenBLAS reads from OPENBLAS_NUM_THREADS when it is
loaded. So the script sets OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS = --threads) and re-execs
itself once before torch is imported; it then checks what it got (openblas_get_num_threads,
torch.get_num_threads) and reports both, with the OpenBLAS kernel in use (openblas_get_corename).

What it times, with the same model and the same step as `starmoe bench --train`:
  * step: forward + mean cross-entropy + the sequence-wise balance loss (alpha 1e-4, summed
    over the MoE layers) + backward + global grad-norm clipping (1.0) + AdamW (lr 1e-3,
    betas 0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D weights only) + the router bias update
    (gamma 1e-3, bias += gamma * sign(mean load - load)).
  * forward: the forward pass with the cross-entropy loss under torch.no_grad() (starmoe's
    forward-only run also computes the loss and keeps nothing for a backward).
The model (written for this benchmark; the float64 test reference tests/ref/dsv3_reference.py
supplies the config parsing, RoPE frequencies and softmax scale, and --check compares against it):
MLA with q/kv LoRA and latent RMSNorms, interleaved RoPE (complex multiply), causal softmax
attention over all heads, sigmoid router with the selection bias and group-limited top-k (sum of
the two best biased scores per group), the routed experts run one by one on their own tokens
(a Python loop over experts, as the official MoE module does), the shared expert, dense first
layers, untied head. Weights: normal(0, initializer_range) for every matrix, ones for the norms,
zero router bias (as `starmoe bench` initializes them); tokens uniform in [0, vocab).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "bench-6m.json"),
                    help="Hugging Face DeepSeek-V3 config.json (a run config's 'model' works too)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="ATen intra-op threads")
    ap.add_argument("--blas-threads", type=int, default=1, help="OpenBLAS threads")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--balance-alpha", type=float, default=1e-4)
    ap.add_argument("--foreach", action="store_true",
                    help="AdamW with foreach=True (multi-tensor); default: torch's default")
    ap.add_argument("--no-forward", action="store_true", help="skip the forward-only timing")
    ap.add_argument("--format", choices=["text", "json"], default="text")
    ap.add_argument("--check", action="store_true",
                    help="compare loss, logits and gradients with the float64 reference, then exit")
    return ap.parse_args(argv)


def ensure_thread_env(args):
    """OpenBLAS reads its thread count once, when it is loaded by `import torch`: set the
    variables and re-exec this script once if they differ."""
    want = {"OPENBLAS_NUM_THREADS": str(args.blas_threads), "OMP_NUM_THREADS": str(args.threads)}
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    if os.environ.get("_PYTORCH_DSV3_REEXEC") == "1":
        sys.exit("pytorch_dsv3.py: could not set %s" % want)
    env = dict(os.environ, _PYTORCH_DSV3_REEXEC="1", **want)
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


ARGS = parse_args()
ensure_thread_env(ARGS)

import ctypes  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
sys.dont_write_bytecode = True  # leave no __pycache__ in tests/ref
import dsv3_reference as ref  # noqa: E402  (sets the default dtype to float64 on import)

torch.set_default_dtype(torch.float32)


# ---------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def lin(n_in, n_out):
    return nn.Linear(n_in, n_out, bias=False)


def rope(x, freqs):
    """Interleaved pairs (x[2j], x[2j+1]) rotated by freqs [S, dr/2] (complex); x [B, S, n, dr]."""
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs[None, :, None, :]).flatten(-2)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        dqk = c.dn + c.dr
        if c.dq:
            self.q_a_proj = lin(c.d, c.dq)
            self.q_a_layernorm = RMSNorm(c.dq, c.eps)
            self.q_b_proj = lin(c.dq, c.H * dqk)
        else:
            self.q_proj = lin(c.d, c.H * dqk)
        self.kv_a_proj_with_mqa = lin(c.d, c.dc + c.dr)
        self.kv_a_layernorm = RMSNorm(c.dc, c.eps)
        self.kv_b_proj = lin(c.dc, c.H * (c.dn + c.dv))
        self.o_proj = lin(c.H * c.dv, c.d)

    def forward(self, x, freqs, scale, mask):
        c = self.c
        B, S, _ = x.shape
        if c.dq:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        else:
            q = self.q_proj(x)
        q = q.view(B, S, c.H, c.dn + c.dr)
        q = torch.cat([q[..., :c.dn], rope(q[..., c.dn:], freqs)], dim=-1)
        kv = self.kv_a_proj_with_mqa(x)
        k_rope = rope(kv[..., c.dc:].unsqueeze(2), freqs)  # [B, S, 1, dr], shared by all heads
        kvu = self.kv_b_proj(self.kv_a_layernorm(kv[..., :c.dc])).view(B, S, c.H, c.dn + c.dv)
        k = torch.cat([kvu[..., :c.dn], k_rope.expand(B, S, c.H, c.dr)], dim=-1)
        v = kvu[..., c.dn:]
        scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)) * scale + mask
        p = torch.softmax(scores, dim=-1)
        o = torch.matmul(p, v.transpose(1, 2)).transpose(1, 2).reshape(B, S, c.H * c.dv)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.gate_proj = lin(d, inter)
        self.up_proj = lin(d, inter)
        self.down_proj = lin(inter, d)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(c.E, c.d))
        self.register_buffer("e_score_correction_bias", torch.zeros(c.E))

    def forward(self, x):
        """x [T, d] -> expert indices [T, K], mixing weights [T, K], sigmoid scores [T, E]."""
        c = self.c
        T = x.shape[0]
        s = torch.sigmoid(F.linear(x, self.weight))
        with torch.no_grad():
            cb = (s + self.e_score_correction_bias).view(T, c.G, c.E // c.G)
            group_score = cb.topk(2, dim=-1).values.sum(-1)
            keep = group_score.topk(c.Gk, dim=-1).indices
            drop = torch.ones(T, c.G, dtype=torch.bool).scatter_(1, keep, False)
            idx = cb.masked_fill(drop.unsqueeze(-1), float("-inf")).view(T, c.E) \
                .topk(c.K, dim=-1).indices
        w = s.gather(1, idx)
        if c.norm_topk:
            w = w / w.sum(-1, keepdim=True)
        return idx, w * c.rsf, s


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.gate = Gate(c)
        self.experts = nn.ModuleList(MLP(c.d, c.mi) for _ in range(c.E))
        self.shared_experts = MLP(c.d, c.Ns * c.mi) if c.Ns else None
        self.load = None
        self.balance = None

    def forward(self, u, alpha):
        c = self.c
        B, S, d = u.shape
        x = u.reshape(B * S, d)
        idx, w, s = self.gate(x)
        counts = torch.bincount(idx.flatten(), minlength=c.E)
        self.load = counts
        y = torch.zeros_like(x)
        for e, n in enumerate(counts.tolist()):
            if n == 0:
                continue
            rows, slot = torch.where(idx == e)
            y.index_add_(0, rows, self.experts[e](x[rows]) * w[rows, slot, None])
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)
        if alpha > 0 and torch.is_grad_enabled():
            # sequence-wise balance loss: alpha * mean over sequences of sum_i f_i P_i,
            # f_i = E/(K S) * tokens of the sequence routed to i (a constant),
            # P_i = mean over the sequence of s_t[i] / sum_j s_t[j]
            with torch.no_grad():
                f = torch.zeros(B, c.E).scatter_add_(1, idx.view(B, S * c.K),
                                                     torch.ones(B, S * c.K))
                f *= c.E / (c.K * S)
            P = (s / s.sum(-1, keepdim=True)).view(B, S, c.E).mean(1)
            self.balance = alpha * (f * P).sum(-1).mean()
        else:
            self.balance = None
        return y.view(B, S, d)


class Layer(nn.Module):
    def __init__(self, c, l):
        super().__init__()
        self.input_layernorm = RMSNorm(c.d, c.eps)
        self.self_attn = MLA(c)
        self.post_attention_layernorm = RMSNorm(c.d, c.eps)
        self.is_moe = c.is_moe(l)
        self.mlp = MoE(c) if self.is_moe else MLP(c.d, c.inter)

    def forward(self, h, freqs, scale, mask, alpha):
        h = h + self.self_attn(self.input_layernorm(h), freqs, scale, mask)
        u = self.post_attention_layernorm(h)
        return h + (self.mlp(u, alpha) if self.is_moe else self.mlp(u))


class Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.V, c.d)
        self.layers = nn.ModuleList(Layer(c, l) for l in range(c.L))
        self.norm = RMSNorm(c.d, c.eps)


class DSV3(nn.Module):
    """Parameter names are the Hugging Face ones (model.layers.N.self_attn.q_a_proj.weight...)."""

    def __init__(self, c, S):
        super().__init__()
        self.c = c
        self.model = Body(c)
        self.lm_head = lin(c.d, c.V)
        ang = torch.arange(S, dtype=torch.float64)[:, None] * ref.rope_freqs(c)[None, :]
        self.register_buffer("freqs", torch.polar(torch.ones_like(ang), ang).to(torch.complex64))
        self.register_buffer("mask", torch.full((S, S), float("-inf")).triu(1))
        self.scale = ref.softmax_scale(c)

    def moe_layers(self):
        return [layer.mlp for layer in self.model.layers if layer.is_moe]

    def forward(self, ids, alpha=0.0):
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, self.freqs, self.scale, self.mask, alpha)
        return self.lm_head(self.model.norm(h))


def init_weights(model, std, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)


# ---------------------------------------------------------------- training step


def make_optimizer(model, foreach):
    decay = [p for p in model.parameters() if p.ndim == 2]
    other = [p for p in model.parameters() if p.ndim != 2]
    kw = {"foreach": True} if foreach else {}
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": other, "weight_decay": 0.0}],
                             lr=1e-3, betas=(0.9, 0.95), eps=1e-8, **kw)


def loss_of(model, ids, targets, alpha):
    logits = model(ids, alpha)
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
    if alpha > 0:
        for moe in model.moe_layers():
            loss = loss + moe.balance
    return loss


def train_step(model, opt, params, ids, targets, alpha, gamma=1e-3):
    """Returns (loss, seconds of forward+backward, seconds of clip+AdamW+bias update)."""
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = loss_of(model, ids, targets, alpha)
    loss.backward()
    t1 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
        for moe in model.moe_layers():
            load = moe.load.float()
            moe.gate.e_score_correction_bias += gamma * torch.sign(load.mean() - load)
    t2 = time.perf_counter()
    return loss.item(), t1 - t0, t2 - t1


def stats(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v)}


def openblas_info():
    """OpenBLAS is already loaded by torch (libblas.so.3 -> openblas-pthread); ask it."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return {"lib": name, "corename": lib.openblas_get_corename().decode(),
                    "config": lib.openblas_get_config().decode().strip(),
                    "threads": lib.openblas_get_num_threads()}
        except (OSError, AttributeError):
            continue
    return {"lib": None}


def blas_info():
    cfg = torch.__config__.show()
    bi = [p.split("=", 1)[1] for p in cfg.replace(",", " ").split() if p.startswith("BLAS_INFO=")]
    return {"torch_blas_info": bi[0] if bi else "?", "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available(), "openblas": openblas_info()}


# ---------------------------------------------------------------- check against the reference


def check(args):
    """Loss, logits and gradients (cross-entropy only) against the float64 reference on the same
    weights; the router weights get std 0.2 so that float32 picks the same experts."""
    cfg = json.load(open(args.config))
    cfg = cfg.get("model", cfg)
    c = ref.Cfg(cfg)
    B, S = 2, min(args.seq, 32)
    model = DSV3(c, S)
    init_weights(model, cfg.get("initializer_range", 0.02), args.seed)
    g = torch.Generator().manual_seed(args.seed + 7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mlp.gate.weight"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        for moe in model.moe_layers():
            moe.gate.e_score_correction_bias.copy_(0.1 * torch.randn(c.E, generator=g))
    ids = torch.randint(0, c.V, (B, S), generator=g)
    tg = torch.randint(0, c.V, (B, S), generator=g)
    logits = model(ids)
    loss = F.cross_entropy(logits.view(-1, c.V), tg.view(-1))
    loss.backward()
    W = {k: v.detach().double().clone().requires_grad_(not k.endswith("correction_bias"))
         for k, v in model.state_dict().items() if k not in ("freqs", "mask")}
    names = set(ref.param_shapes(c))
    ok = set(W) == names
    if not ok:
        print("parameter names differ from the reference: %s" % sorted(set(W) ^ names))
    rlogits, rloss, _ = ref.forward(c, W, ids, tg)
    rloss.backward()
    dl = (logits.double() - rlogits).abs().max().item()
    grads = dict(model.named_parameters())
    worst, worst_name = 0.0, ""
    for k, t in W.items():
        if not t.requires_grad:
            continue
        rg = t.grad if t.grad is not None else torch.zeros_like(t)
        gg = grads[k].grad.double() if grads[k].grad is not None else torch.zeros_like(t)
        rel = ((gg - rg).norm() / rg.norm().clamp_min(1e-30)).item()
        if rel > worst:
            worst, worst_name = rel, k
    print("loss %.7f (reference %.7f), max |logit diff| %.2e, worst gradient rel. error %.2e (%s)"
          % (loss.item(), rloss.item(), dl, worst, worst_name))
    ok = ok and abs(loss.item() - rloss.item()) < 1e-4 and dl < 1e-4 and worst < 1e-3
    # balance loss: the same formula as tasks/moe_kernels.c (per sequence, then the mean)
    model.zero_grad()
    loss_of(model, ids, tg, 1e-4)
    bal = [m.balance.item() for m in model.moe_layers()]
    print("balance loss per MoE layer (alpha 1e-4): %s (a uniform router gives %.1e)" %
          (["%.4e" % b for b in bal], 1e-4))
    print("CHECK: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


# ---------------------------------------------------------------- benchmark


def bench(args):
    cfg = json.load(open(args.config))
    cfg = cfg.get("model", cfg)
    c = ref.Cfg(cfg)
    torch.manual_seed(args.seed)
    model = DSV3(c, args.seq)
    init_weights(model, cfg.get("initializer_range", 0.02), args.seed)
    nparams = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(0, c.V, (args.batch, args.seq), generator=g)
    tg = torch.randint(0, c.V, (args.batch, args.seq), generator=g)
    ntok = args.batch * args.seq

    fwd = []
    if not args.no_forward:
        with torch.no_grad():
            for i in range(args.warmup + args.reps):
                t0 = time.perf_counter()
                loss = loss_of(model, ids, tg, 0.0).item()
                if i >= args.warmup:
                    fwd.append(time.perf_counter() - t0)

    opt = make_optimizer(model, args.foreach)
    params = [p for p in model.parameters()]
    step, fb, upd, losses = [], [], [], []
    for i in range(args.warmup + args.reps):
        t0 = time.perf_counter()
        loss, t_fb, t_upd = train_step(model, opt, params, ids, tg, args.balance_alpha)
        t = time.perf_counter() - t0
        losses.append(loss)
        if i >= args.warmup:
            step.append(t)
            fb.append(t_fb)
            upd.append(t_upd)

    st = stats(step)
    res = {"impl": "pytorch-eager", "torch": torch.__version__, "batch": args.batch,
           "seq": args.seq, "params": nparams, "threads": torch.get_num_threads(),
           "blas_threads": args.blas_threads, "reps": args.reps, "warmup": args.warmup,
           "tokens_per_s": ntok / st["median"], "step_s_median": st["median"],
           "step_s_min": st["min"], "step_s_max": st["max"],
           "fwdbwd_s_median": statistics.median(fb), "update_s_median": statistics.median(upd),
           "loss_first": losses[0], "loss_last": losses[-1], "foreach": args.foreach,
           # the process's peak resident memory, as `starmoe bench` measures its own (KiB)
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if fwd:
        fs = stats(fwd)
        res.update({"fwd_s_median": fs["median"], "fwd_s_min": fs["min"], "fwd_s_max": fs["max"],
                    "fwd_tokens_per_s": ntok / fs["median"]})
    res.update(blas_info())
    res["env"] = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                  "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if args.format == "json":
        print(json.dumps(res, separators=(",", ":")))
    else:
        ob = res["openblas"]
        print("pytorch %s eager, %.2f M params, batch %d x seq %d, ATen threads %d, OpenBLAS "
              "threads %s (core %s), BLAS_INFO=%s" %
              (res["torch"], nparams * 1e-6, args.batch, args.seq, res["threads"],
               ob.get("threads"), ob.get("corename"), res["torch_blas_info"]))
        if fwd:
            print("forward        median %8.2f ms  min %8.2f  max %8.2f" %
                  (res["fwd_s_median"] * 1e3, res["fwd_s_min"] * 1e3, res["fwd_s_max"] * 1e3))
        print("train step     median %8.2f ms  min %8.2f  max %8.2f  (fwd+bwd %.2f ms, clip+AdamW"
              "+bias %.2f ms)" % (st["median"] * 1e3, st["min"] * 1e3, st["max"] * 1e3,
                                  res["fwdbwd_s_median"] * 1e3, res["update_s_median"] * 1e3))
        print("throughput     %.0f tokens/s (forward only %s tokens/s); loss %.4f -> %.4f" %
              (res["tokens_per_s"], "%.0f" % res["fwd_tokens_per_s"] if fwd else "-",
               losses[0], losses[-1]))
        print("memory         peak resident %.1f MiB" % (res["peak_rss_bytes"] / 2**20))
    return 0


def main():
    torch.set_num_threads(ARGS.threads)
    if ARGS.check:
        return check(ARGS)
    return bench(ARGS)


if __name__ == "__main__":
    sys.exit(main())
