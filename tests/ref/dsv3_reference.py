#!/usr/bin/python3
"""Independent float64 reference for DeepSeek-V3-style models (MLA + DeepSeekMoE).

Written from a description of the model (now docs/model.md, sections 2-5) and the conventions
of the fixture tests/fixtures/dsv3-tiny-a (produced by the official DeepSeek-V3 code).
Everything is computed in float64 with torch autograd, then stored as float32.

Generate a fixture:
  /usr/bin/python3 tests/ref/dsv3_reference.py --config CFG.json --out DIR \
      --batch B --seq S --seed N [--gate-std 0.2]
Validate against an existing fixture folder (its config, weights and inputs):
  /usr/bin/python3 tests/ref/dsv3_reference.py --check-fixture DIR

Conventions (see the fixture README):
  * linear weights [out, in], y = x @ W.T, no biases; embedding and lm_head untied.
  * RMSNorm x * rsqrt(mean(x^2) + eps) * w.
  * MLA: q = q_b(q_a_layernorm(q_a(x))) or q_proj(x) when q_lora_rank is 0/null; per head
    [nope | rope]. kv_a(x) = [latent | k_rope] (k_rope shared by all heads);
    kv_b(kv_a_layernorm(latent)) per head [k_nope | v]. RoPE on interleaved pairs
    (x[2j], x[2j+1]). Causal softmax, heads concatenated head-major, o_proj.
  * YaRN (official precompute_freqs_cis) when factor > 1 and
    max_position_embeddings > original_max_position_embeddings: frequency correction and
    softmax_scale *= (0.1 * mscale_all_dim * ln(factor) + 1)^2. No cos/sin magnitude factor
    (the official code has none; HF's mscale/mscale_all_dim ratio is NOT applied).
  * Router: s = sigmoid(u W_g^T), c = s + bias (selection only), group score = sum of the two
    largest c per group, keep topk_group groups, others -inf, top-K by c (ties: lower index),
    weights = s[sel] / sum(s[sel]) (if norm_topk_prob) * routed_scaling_factor.
  * MoE output = sum_k w_k expert_k(u) + shared(u) (one MLP of width
    n_shared_experts * moe_intermediate_size; absent when n_shared_experts is 0).
  * Layer l is MoE iff l >= first_k_dense_replace and l % moe_layer_freq == 0 (HF rule).
  * MTP (num_nextn_predict_layers = D > 0; the model spec's section 7): depth k's module is
    layer L + k - 1: eh_proj . [enorm(Emb(t_{i+k})) ; hnorm(h^{k-1}_i)] (embedding half first,
    h^0 the main hidden state after model.norm), its block over S - k positions,
    shared_head.norm, lm_head; loss = loss_main + (lambda / D) sum_k loss_mtp_k, each the
    cross-entropy summed over the positions with a target divided by B * S. The copies
    embed_tokens / shared_head.head repeat the main tensors and report their gradients.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------- safetensors I/O

_DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64,
       "F16": np.float16, "U8": np.uint8, "I8": np.int8, "I16": np.int16}


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = np.dtype(_DT[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(info["shape"])
        out[name] = arr.astype(dt.newbyteorder("="))
    return out


def st_metadata(path):
    """The __metadata__ strings of a safetensors file ({} when it has none)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n).decode("utf-8")).get("__metadata__", {})


def st_write(path, tensors, metadata=None):
    """tensors: {name: np.ndarray (float32 or int32)}; names written in sorted order."""
    rev = {np.dtype(v): k for k, v in _DT.items()}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": rev[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for d in blobs:
            f.write(d)


# ---------------------------------------------------------------- config


class Cfg:
    def __init__(self, j):
        self.j = j
        g = j.get
        self.V = g("vocab_size")
        self.d = g("hidden_size")
        self.inter = g("intermediate_size")
        self.mi = g("moe_intermediate_size")
        self.L = g("num_hidden_layers")
        self.Ld = g("first_k_dense_replace", 0)
        self.freq = g("moe_layer_freq", 1) or 1
        self.H = g("num_attention_heads")
        self.dq = g("q_lora_rank") or 0
        self.dc = g("kv_lora_rank")
        self.dn = g("qk_nope_head_dim")
        self.dr = g("qk_rope_head_dim")
        self.dv = g("v_head_dim")
        self.E = g("n_routed_experts") or 0
        self.Ns = g("n_shared_experts") or 0
        self.K = g("num_experts_per_tok")
        self.G = g("n_group", 1) or 1
        self.Gk = g("topk_group", 1) or 1
        self.rsf = float(g("routed_scaling_factor", 1.0))
        self.norm_topk = bool(g("norm_topk_prob", True))
        self.eps = float(g("rms_norm_eps", 1e-6))
        self.theta = float(g("rope_theta", 10000.0))
        self.maxpos = g("max_position_embeddings")
        self.D = g("num_nextn_predict_layers", 0) or 0
        assert g("scoring_func", "sigmoid") == "sigmoid"
        assert g("topk_method", "noaux_tc") == "noaux_tc"
        assert not g("tie_word_embeddings", False)
        rs = g("rope_scaling") or None
        self.yarn = None
        if rs is not None:
            kind = rs.get("type", rs.get("rope_type", "yarn"))
            assert kind == "yarn", "rope_scaling type %r is not supported" % kind
            factor = float(rs.get("factor", 1.0))
            orig = int(rs.get("original_max_position_embeddings", self.maxpos))
            if factor > 1 and self.maxpos > orig:
                self.yarn = dict(factor=factor, orig=orig,
                                 beta_fast=float(rs.get("beta_fast", 32)),
                                 beta_slow=float(rs.get("beta_slow", 1)),
                                 mscale_all_dim=float(rs.get("mscale_all_dim", 0.0)))
        if self.E:
            assert self.E % self.G == 0 and self.E // self.G >= 2
            assert self.Gk <= self.G and self.K <= self.Gk * (self.E // self.G)
        assert self.dr % 2 == 0

    def is_moe(self, l):
        return self.E > 0 and l >= self.Ld and l % self.freq == 0


def param_shapes(c):
    """HF names -> shapes, in the order of the fixture README's table."""
    p = {"model.embed_tokens.weight": [c.V, c.d]}
    for l in range(c.L):
        block_shapes(c, l, p)
    p["model.norm.weight"] = [c.d]
    p["lm_head.weight"] = [c.V, c.d]
    for k in range(1, c.D + 1):
        pre = "model.layers.%d." % (c.L + k - 1)
        p[pre + "embed_tokens.weight"] = [c.V, c.d]      # a copy of the main embedding
        p[pre + "enorm.weight"] = [c.d]
        p[pre + "hnorm.weight"] = [c.d]
        p[pre + "eh_proj.weight"] = [c.d, 2 * c.d]
        block_shapes(c, c.L + k - 1, p)
        p[pre + "shared_head.norm.weight"] = [c.d]
        p[pre + "shared_head.head.weight"] = [c.V, c.d]  # a copy of lm_head
    return p


# MTP tensors that are copies of the main model's (the same values; trained as it)
COPIES = {"embed_tokens.weight": "model.embed_tokens.weight",
          "shared_head.head.weight": "lm_head.weight"}


def copy_of(name):
    """The main tensor an MTP copy repeats, None for other names."""
    for suffix, main in COPIES.items():
        if name.startswith("model.layers.") and name.endswith("." + suffix):
            return main
    return None


def block_shapes(c, l, p):
    """Adds decoder block l's tensors (a main layer, or an MTP module's block)."""
    dqk = c.dn + c.dr
    pre = "model.layers.%d." % l
    p[pre + "input_layernorm.weight"] = [c.d]
    a = pre + "self_attn."
    if c.dq:
        p[a + "q_a_proj.weight"] = [c.dq, c.d]
        p[a + "q_a_layernorm.weight"] = [c.dq]
        p[a + "q_b_proj.weight"] = [c.H * dqk, c.dq]
    else:
        p[a + "q_proj.weight"] = [c.H * dqk, c.d]
    p[a + "kv_a_proj_with_mqa.weight"] = [c.dc + c.dr, c.d]
    p[a + "kv_a_layernorm.weight"] = [c.dc]
    p[a + "kv_b_proj.weight"] = [c.H * (c.dn + c.dv), c.dc]
    p[a + "o_proj.weight"] = [c.d, c.H * c.dv]
    p[pre + "post_attention_layernorm.weight"] = [c.d]
    m = pre + "mlp."
    if c.is_moe(l):
        p[m + "gate.weight"] = [c.E, c.d]
        p[m + "gate.e_score_correction_bias"] = [c.E]
        for e in range(c.E):
            p[m + "experts.%d.gate_proj.weight" % e] = [c.mi, c.d]
            p[m + "experts.%d.up_proj.weight" % e] = [c.mi, c.d]
            p[m + "experts.%d.down_proj.weight" % e] = [c.d, c.mi]
        if c.Ns:
            w = c.Ns * c.mi
            p[m + "shared_experts.gate_proj.weight"] = [w, c.d]
            p[m + "shared_experts.up_proj.weight"] = [w, c.d]
            p[m + "shared_experts.down_proj.weight"] = [c.d, w]
    else:
        p[m + "gate_proj.weight"] = [c.inter, c.d]
        p[m + "up_proj.weight"] = [c.inter, c.d]
        p[m + "down_proj.weight"] = [c.d, c.inter]


def is_norm(name):
    return name.endswith(("layernorm.weight", ".enorm.weight", ".hnorm.weight",
                          "shared_head.norm.weight")) or name == "model.norm.weight"


def init_weights(c, seed, gate_std):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(c).items():
        if copy_of(name):
            out[name] = out[copy_of(name)].copy()   # not drawn
            continue
        z = torch.randn(shape, generator=gen, dtype=torch.float32)
        if is_norm(name):
            w = 1.0 + 0.1 * z
        elif name.endswith("e_score_correction_bias"):
            w = 0.1 * z
        elif name.endswith("mlp.gate.weight"):
            w = gate_std * z
        else:
            w = 0.02 * z
        out[name] = w.numpy().astype(np.float32)
    return out


# ---------------------------------------------------------------- model pieces


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def swiglu(x, wg, wu, wd):
    g = x @ wg.T
    return (g * torch.sigmoid(g) * (x @ wu.T)) @ wd.T


def rope_freqs(c):
    """theta_j, j < dr/2, with the official YaRN correction (docs/model.md section 4)."""
    dim = c.dr
    theta = 1.0 / (c.theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    y = c.yarn
    if y is None:
        return theta

    def corr(r):
        return dim * math.log(y["orig"] / (r * 2 * math.pi)) / (2 * math.log(c.theta))

    low = max(math.floor(corr(y["beta_fast"])), 0)
    high = min(math.ceil(corr(y["beta_slow"])), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    return theta / y["factor"] * ramp + theta * (1 - ramp)


def softmax_scale(c):
    s = (c.dn + c.dr) ** -0.5
    if c.yarn is not None:
        m = 0.1 * c.yarn["mscale_all_dim"] * math.log(c.yarn["factor"]) + 1.0
        s *= m * m
    return s


def apply_rope(x, cos, sin):
    """x [..., S, n, dr] interleaved pairs; cos/sin [S, dr/2]."""
    xe, xo = x[..., 0::2], x[..., 1::2]
    cs, sn = cos[:, None, :], sin[:, None, :]
    ye = xe * cs - xo * sn
    yo = xe * sn + xo * cs
    return torch.stack([ye, yo], dim=-1).flatten(-2)


def mla(c, W, pre, x, cos, sin, scale):
    B, S, _ = x.shape
    dqk = c.dn + c.dr
    a = pre + "self_attn."
    if c.dq:
        q = rmsnorm(x @ W[a + "q_a_proj.weight"].T, W[a + "q_a_layernorm.weight"], c.eps)
        q = q @ W[a + "q_b_proj.weight"].T
    else:
        q = x @ W[a + "q_proj.weight"].T
    q = q.view(B, S, c.H, dqk)
    q_nope, q_rope = q[..., :c.dn], apply_rope(q[..., c.dn:], cos, sin)
    kv = x @ W[a + "kv_a_proj_with_mqa.weight"].T
    lat, k_rope = kv[..., :c.dc], kv[..., c.dc:]
    k_rope = apply_rope(k_rope.unsqueeze(2), cos, sin)  # [B,S,1,dr]
    kvu = rmsnorm(lat, W[a + "kv_a_layernorm.weight"], c.eps) @ W[a + "kv_b_proj.weight"].T
    kvu = kvu.view(B, S, c.H, c.dn + c.dv)
    k_nope, v = kvu[..., :c.dn], kvu[..., c.dn:]
    sc = (torch.einsum("bshd,bthd->bhst", q_nope, k_nope) +
          torch.einsum("bshd,btd->bhst", q_rope, k_rope[:, :, 0, :])) * scale
    mask = torch.full((S, S), float("-inf")).triu(1)
    p = torch.softmax(sc + mask, dim=-1)
    o = torch.einsum("bhst,bthd->bshd", p, v).reshape(B, S, c.H * c.dv)
    return o @ W[a + "o_proj.weight"].T


def stable_topk(v, k):
    """Indices of the k largest entries of each row, descending; ties -> lower index."""
    order = torch.sort(-v, dim=-1, stable=True).indices
    return order[:, :k]


def select(c, cb, group_rule="top2", groups=True):
    """Group-limited top-K on biased scores cb [T,E]. Returns (idx [T,K], keep [T,Gk], gscore,
    masked scores)."""
    T = cb.shape[0]
    ng = c.E // c.G
    grp = cb.view(T, c.G, ng)
    if group_rule == "top2":
        gscore = grp.topk(2, dim=-1).values.sum(-1)
    elif group_rule == "sum":
        gscore = grp.sum(-1)
    else:
        gscore = grp.max(-1).values
    if not groups:
        gscore = torch.zeros_like(gscore)
        keep = torch.arange(c.G).expand(T, c.G)[:, :c.Gk]
        return stable_topk(cb, c.K), keep, gscore, cb
    keep = stable_topk(gscore, c.Gk)
    gmask = torch.ones(T, c.G, dtype=torch.bool)
    gmask.scatter_(1, keep, False)
    masked = grp.masked_fill(gmask.unsqueeze(-1), float("-inf")).view(T, c.E)
    return stable_topk(masked, c.K), keep, gscore, masked


def route(c, u, wgate, bias):
    """Selection in float64 without gradient; returns indices [T,K] (descending biased score),
    the smallest group and expert decision margins, and diagnostics."""
    with torch.no_grad():
        s = torch.sigmoid(u @ wgate.T)
        cb = s + bias
        idx, keep, gscore, masked = select(c, cb)
        ng = c.E // c.G
        # margins: Gk-th kept group score vs best dropped group; K-th chosen c vs best unchosen
        # candidate of the kept groups
        gs = torch.sort(gscore, dim=-1, descending=True).values
        gmargin = (gs[:, c.Gk - 1] - gs[:, c.Gk]).min().item() if c.Gk < c.G else math.inf
        ms = torch.sort(masked, dim=-1, descending=True).values
        emargin = (ms[:, c.K - 1] - ms[:, c.K]).min().item() if c.K < c.Gk * ng else math.inf

        def differs(other):
            return int((torch.sort(other, -1).values != torch.sort(idx, -1).values)
                       .any(-1).sum())

        # diagnostics: on how many tokens would a wrong rule pick other experts?
        diag = {"groups_sum_differs": differs(select(c, cb, "sum")[0]),
                "groups_max_differs": differs(select(c, cb, "max")[0]),
                "no_bias_differs": differs(select(c, s)[0]),
                "no_group_limit_differs": differs(select(c, cb, groups=False)[0]),
                "experts_used": int(torch.unique(idx).numel())}
    return idx, gmargin, emargin, diag


def moe(c, W, pre, u, rec, l):
    B, S, d = u.shape
    x = u.reshape(B * S, d)
    m = pre + "mlp."
    idx, gm, em, diag = route(c, x, W[m + "gate.weight"], W[m + "gate.e_score_correction_bias"])
    s = torch.sigmoid(x @ W[m + "gate.weight"].T)  # with gradient
    w = s.gather(1, idx)
    if c.norm_topk:
        w = w / w.sum(-1, keepdim=True)
    w = w * c.rsf
    y = torch.zeros_like(x)
    for e in range(c.E):
        rows, slot = (idx == e).nonzero(as_tuple=True)
        if rows.numel() == 0:
            continue
        pe = m + "experts.%d." % e
        ye = swiglu(x[rows], W[pe + "gate_proj.weight"], W[pe + "up_proj.weight"],
                    W[pe + "down_proj.weight"])
        y = y.index_add(0, rows, ye * w[rows, slot].unsqueeze(-1))
    if c.Ns:
        ps = m + "shared_experts."
        y = y + swiglu(x, W[ps + "gate_proj.weight"], W[ps + "up_proj.weight"],
                       W[ps + "down_proj.weight"])
    rec["routing.layers.%d.indices" % l] = idx.to(torch.int32)
    rec["routing.layers.%d.weights" % l] = w.detach()
    rec["margins"][l] = (gm, em)
    rec["diag"][l] = diag
    return y.view(B, S, d)


def block(c, W, l, h, cos, sin, scale, rec):
    """Decoder block l (a main layer, or an MTP module's block) on the residual stream h."""
    pre = "model.layers.%d." % l
    h = h + mla(c, W, pre, rmsnorm(h, W[pre + "input_layernorm.weight"], c.eps), cos, sin, scale)
    u = rmsnorm(h, W[pre + "post_attention_layernorm.weight"], c.eps)
    if c.is_moe(l):
        return h + moe(c, W, pre, u, rec, l)
    return h + swiglu(u, W[pre + "mlp.gate_proj.weight"], W[pre + "mlp.up_proj.weight"],
                      W[pre + "mlp.down_proj.weight"])


def mtp_name(what, k):
    """A depth's output name: `what` for depth 1, `what.K` for depth K > 1."""
    return what if k == 1 else "%s.%d" % (what, k)


def shifted_targets(targets, k):
    """Depth k's targets: position i predicts targets[i + k] (-1 past the end)."""
    t = np.full_like(targets, -1)
    t[:, :targets.shape[1] - k] = targets[:, k:]
    return t


def mtp(c, W, ids, h0, mtp_targets, cos, sin, scale, rec):
    """The D MTP modules (docs: spec 7.1-7.2): depth k combines the previous depth's hidden state
    (depth 1: the main model's after the final norm) with the embedding of the token k ahead,
    eh_proj . [enorm(emb) ; hnorm(h)] (embedding half first), runs its block over the S - k
    positions that have one, its own norm and the main head. Its loss sums the cross-entropy
    over the positions with a target and divides by B * S. Returns the depths' losses."""
    B, S = ids.shape
    prev, losses = h0, []
    for k in range(1, c.D + 1):
        n, l = S - k, c.L + k - 1
        pre = "model.layers.%d." % l
        e = rmsnorm(W["model.embed_tokens.weight"][ids[:, k:].long()], W[pre + "enorm.weight"],
                    c.eps)
        hh = rmsnorm(prev[:, :n], W[pre + "hnorm.weight"], c.eps)
        x = torch.cat([e, hh], -1) @ W[pre + "eh_proj.weight"].T
        x = block(c, W, l, x, cos[:n], sin[:n], scale, rec)
        logits = rmsnorm(x, W[pre + "shared_head.norm.weight"], c.eps) @ W["lm_head.weight"].T
        tk = torch.from_numpy(np.asarray(mtp_targets[k - 1], dtype=np.int64))[:, :n]
        loss = torch.nn.functional.cross_entropy(logits.reshape(B * n, -1), tk.reshape(-1),
                                                 ignore_index=-1, reduction="sum") / (B * S)
        rec[mtp_name("mtp_logits", k)] = logits.detach()
        rec[mtp_name("loss_mtp", k)] = loss
        losses.append(loss)
        prev = x
    return losses


def forward(c, W, ids, targets, mtp_targets=None, mtp_lambda=0.3):
    B, S = ids.shape
    rec = {"margins": {}, "diag": {}}
    theta = rope_freqs(c)
    ang = torch.arange(S, dtype=torch.float64)[:, None] * theta[None, :]
    cos, sin = torch.cos(ang), torch.sin(ang)
    rec["rope.cos"], rec["rope.sin"] = cos, sin
    scale = softmax_scale(c)
    rec["softmax_scale"] = scale
    h = W["model.embed_tokens.weight"][ids.long()]
    for l in range(c.L):
        h = block(c, W, l, h, cos, sin, scale, rec)
        rec["hidden.layers.%d.output" % l] = h.detach()
    hf = rmsnorm(h, W["model.norm.weight"], c.eps)
    logits = hf @ W["lm_head.weight"].T
    loss = torch.nn.functional.cross_entropy(logits.reshape(B * S, -1),
                                             targets.reshape(-1).long())
    if c.D:
        rec["loss_main"] = loss
        losses = mtp(c, W, ids, hf, mtp_targets, cos, sin, scale, rec)
        loss = loss + mtp_lambda / c.D * sum(losses)
    return logits, loss, rec


def run(cfg_json, weights_np, ids_np, tg_np, mtp_np=None, mtp_lambda=0.3):
    """Returns (expected dict of float32/int32 numpy arrays, rec). mtp_np: each MTP depth's
    targets (None: the targets shifted)."""
    c = Cfg(cfg_json)
    W = {}
    for k, v in weights_np.items():
        main = copy_of(k)
        if main is not None and not np.array_equal(np.asarray(v), np.asarray(weights_np[main])):
            raise SystemExit("%s differs from %s: an MTP copy must repeat it" % (k, main))
        t = torch.from_numpy(np.asarray(v, dtype=np.float64).copy())
        if not k.endswith("e_score_correction_bias"):
            t.requires_grad_(True)
        W[k] = t
    ids = torch.from_numpy(np.asarray(ids_np, dtype=np.int64))
    tg = torch.from_numpy(np.asarray(tg_np, dtype=np.int64))
    if mtp_np is None:
        mtp_np = [shifted_targets(np.asarray(tg_np), k) for k in range(1, c.D + 1)]
    logits, loss, rec = forward(c, W, ids, tg, mtp_np, mtp_lambda)
    loss.backward()
    out = {"logits": logits.detach().numpy().astype(np.float32),
           "loss": np.array([loss.item()], dtype=np.float32)}
    for k, v in rec.items():
        if k.startswith(("loss_main", "loss_mtp")):
            out[k] = np.array([v.item()], dtype=np.float32)
        elif k.startswith(("routing.", "hidden.", "rope.", "mtp_logits")):
            a = v.numpy()
            out[k] = a.astype(np.int32) if a.dtype == np.int32 else a.astype(np.float32)
    for k, t in W.items():
        if k.endswith("e_score_correction_bias"):
            continue
        src = W[copy_of(k)] if copy_of(k) else t   # a copy holds the shared tensor's gradient
        g = src.grad if src.grad is not None else torch.zeros_like(t)
        out["grad." + k] = g.numpy().astype(np.float32)
    rec["loss64"] = loss.item()
    return out, rec


def min_margin(rec):
    m = [v for gm_em in rec["margins"].values() for v in gm_em]
    return min(m) if m else math.inf


# ---------------------------------------------------------------- modes


def self_test():
    """The YaRN test vectors of docs/model.md sections 1.2 and 4."""
    ok = True
    base = {"vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
            "kv_lora_rank": 8, "v_head_dim": 8, "rope_theta": 10000.0}
    big = Cfg(dict(base, qk_nope_head_dim=128, qk_rope_head_dim=64, max_position_embeddings=163840,
                   rope_scaling={"type": "yarn", "factor": 40, "original_max_position_embeddings":
                                 4096, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                                 "mscale_all_dim": 1.0}))
    r = (rope_freqs(big) / rope_freqs(Cfg(dict(big.j, rope_scaling=None)))).tolist()
    want = {0: 1, 10: 1, 11: 0.925, 16: 0.55, 22: 0.10, 23: 0.025, 31: 0.025}
    for j, v in want.items():
        ok &= abs(r[j] - v) < 1e-9
    ok &= abs(softmax_scale(big) - 0.1352338) < 5e-8
    tiny = Cfg(dict(base, qk_nope_head_dim=32, qk_rope_head_dim=16, max_position_embeddings=64,
                    rope_scaling={"type": "yarn", "factor": 4, "original_max_position_embeddings":
                                  32, "beta_fast": 32, "beta_slow": 1, "mscale_all_dim": 1.0}))
    r2 = (rope_freqs(tiny) / rope_freqs(Cfg(dict(tiny.j, rope_scaling=None)))).tolist()
    ok &= all(abs(a - b) < 1e-12 for a, b in zip(r2[:4], [1, 0.625, 0.25, 0.25]))
    ok &= abs(softmax_scale(tiny) - 0.18713) < 5e-6
    ok &= abs(softmax_scale(Cfg(dict(tiny.j, rope_scaling=None))) - 0.14434) < 5e-6
    print("671B ratios j=0,10,11,16,22,23: %s" % [round(r[j], 6) for j in (0, 10, 11, 16, 22, 23)])
    print("671B softmax scale %.7f; tiny ratios %s, scale %.5f" %
          (softmax_scale(big), [round(x, 4) for x in r2[:4]], softmax_scale(tiny)))
    print("SELF-TEST: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def check_fixture(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = st_read(os.path.join(d, "model.safetensors"))
    inp = st_read(os.path.join(d, "inputs.safetensors"))
    exp = st_read(os.path.join(d, "expected.safetensors"))
    c = Cfg(cfg)
    mtp_np = [inp[mtp_name("mtp_targets", k)] for k in range(1, c.D + 1)] if c.D else None
    lam = float(st_metadata(os.path.join(d, "expected.safetensors")).get("mtp_lambda", 0.3))
    got, rec = run(cfg, W, inp["input_ids"], inp["targets"], mtp_np, lam)
    ok = True
    print("fixture %s" % d)
    print("softmax_scale %.9g, loss64 %.9f, min routing margin %.3g" %
          (rec["softmax_scale"], rec["loss64"], min_margin(rec)))
    for l, (gm, em) in sorted(rec["margins"].items()):
        print("  layer %d: group margin %.3g, expert margin %.3g, %s" % (l, gm, em, rec["diag"][l]))
    missing = sorted(set(exp) - set(got))
    extra = sorted(set(got) - set(exp))
    if missing:
        print("in expected but not computed: %s" % missing)
        ok = False
    if extra:
        print("computed but not in expected: %s" % extra)
    worst_rel, worst_name, worst_abs, worst_abs_name = 0.0, "", 0.0, ""
    for k in sorted(exp):
        if k not in got:
            continue
        e, g = exp[k], got[k]
        if e.shape != g.shape:
            print("%s: shape %s vs %s" % (k, e.shape, g.shape))
            ok = False
            continue
        if k.endswith(".indices"):
            same = all(set(a) == set(b) for a, b in zip(e.tolist(), g.tolist()))
            order = bool((e == g).all())
            print("%-40s sets identical: %s (same order: %s)" % (k, same, order))
            ok &= same
            continue
        e64, g64 = e.astype(np.float64), g.astype(np.float64)
        mad = float(np.abs(e64 - g64).max())
        den = float(np.linalg.norm(e64))
        rel = float(np.linalg.norm(e64 - g64) / den) if den > 0 else float(np.linalg.norm(g64))
        if k.startswith("grad."):
            if rel > worst_rel:
                worst_rel, worst_name = rel, k
            if mad > worst_abs:
                worst_abs, worst_abs_name = mad, k
            ok &= rel <= 1e-5
        else:
            print("%-40s max abs %.3g  rel frob %.3g" % (k, mad, rel))
            if k in ("logits", "loss", "loss_main") or k.startswith(("hidden.", "loss_mtp",
                                                                      "mtp_logits")):
                ok &= mad <= 1e-5
    ng = sum(1 for k in exp if k.startswith("grad."))
    print("%d gradients: worst rel Frobenius %.3g (%s); worst max abs %.3g (%s)" %
          (ng, worst_rel, worst_name, worst_abs, worst_abs_name))
    print("RESULT: %s" % ("AGREE" if ok else "DISAGREE"))
    return 0 if ok else 1


def generate(args):
    cfg = json.load(open(args.config))
    c = Cfg(cfg)
    if args.seq > c.maxpos:
        sys.exit("seq %d exceeds max_position_embeddings %d" % (args.seq, c.maxpos))
    W = init_weights(c, args.seed, args.gate_std)
    gen = torch.Generator().manual_seed(args.seed + 1)
    seq = torch.randint(0, c.V, (args.batch, args.seq + 1), generator=gen)
    ids = seq[:, :-1].numpy().astype(np.int32)
    tg = seq[:, 1:].numpy().astype(np.int32)
    mtp_np = [shifted_targets(tg, k) for k in range(1, c.D + 1)]
    exp, rec = run(cfg, W, ids, tg, mtp_np, args.mtp_lambda)
    mm = min_margin(rec)
    print("seed %d: loss64 %.9f, softmax_scale %.9g, min routing margin %.3g" %
          (args.seed, rec["loss64"], rec["softmax_scale"], mm))
    for l, (gm, em) in sorted(rec["margins"].items()):
        print("  layer %d: group margin %.3g, expert margin %.3g, %s" % (l, gm, em, rec["diag"][l]))
    if not mm > args.min_margin:
        print("ERROR: smallest routing decision margin %.3g <= %.3g: a float32 engine may route "
              "differently; choose another --seed" % (mm, args.min_margin))
        return 2
    os.makedirs(args.out, exist_ok=True)
    meta = {"producer": "tests/ref/dsv3_reference.py (float64 reimplementation)",
            "seed": args.seed, "gate_std": args.gate_std}
    if c.D:
        meta["mtp_lambda"] = args.mtp_lambda
    cfg_out = os.path.join(args.out, "config.json")
    if os.path.abspath(args.config) != os.path.abspath(cfg_out):
        shutil.copyfile(args.config, cfg_out)
    st_write(os.path.join(args.out, "model.safetensors"), W, meta)
    inputs = {"input_ids": ids, "targets": tg}
    for k in range(1, c.D + 1):
        inputs[mtp_name("mtp_targets", k)] = mtp_np[k - 1].astype(np.int32)
    st_write(os.path.join(args.out, "inputs.safetensors"), inputs, meta)
    st_write(os.path.join(args.out, "expected.safetensors"), exp, meta)
    print("max |logit| %.4g, max |grad| %.4g, params %d" %
          (float(np.abs(exp["logits"]).max()),
           max(float(np.abs(v).max()) for k, v in exp.items() if k.startswith("grad.")),
           sum(v.size for v in W.values())))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check-fixture", metavar="DIR")
    ap.add_argument("--self-test", action="store_true", help="check the YaRN test vectors of docs/model.md")
    ap.add_argument("--config")
    ap.add_argument("--out")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--gate-std", type=float, default=0.2)
    ap.add_argument("--mtp-lambda", type=float, default=0.3,
                    help="weight of the MTP losses (configs with num_nextn_predict_layers > 0)")
    ap.add_argument("--min-margin", type=float, default=1e-6,
                    help="refuse to write when a routing decision is closer than this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.self_test:
        return self_test()
    if args.check_fixture:
        return check_fixture(args.check_fixture)
    if not args.config or not args.out:
        ap.error("--config and --out are required (or --check-fixture DIR)")
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
