#!/usr/bin/python3
"""Generate the golden fixtures in tests/data/ for the attention.h C tests.

Each fixture tests/data/<case>.txt holds the inputs, parameters and expected
outputs of one torch.nn.MultiheadAttention (batch_first=True, eval mode, no
dropout) call, computed in float64, as a whitespace-separated text file
("attn-golden 1", the int fields, the tensors, then "end").

Needs Debian's PyTorch (apt install python3-torch), hence the /usr/bin/python3
shebang.  Run from the repo root as:

    /usr/bin/python3 tests/gen_golden.py

This script is only needed to regenerate the fixtures: the C tests read the
files in tests/data/ directly, no Python is needed at test time.
"""

import os

import torch
import torch.nn as nn

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

INT_FIELDS = ("batch", "n_q", "n_kv", "d_model", "d_kv", "n_heads", "bias",
              "self", "causal", "weights_mode", "has_key_padding_mask",
              "has_attn_mask")


def fmt(v):
    v = float(v)
    if v == float("inf"):
        return "inf"
    if v == float("-inf"):
        return "-inf"
    return repr(v)  # shortest string that round-trips exactly


def tensor_block(name, t):
    """'tensor NAME COUNT' then the values row-major, one innermost row per line."""
    t = t.detach().to(torch.float64).contiguous()
    lines = ["tensor %s %d" % (name, t.numel())]
    rows = t.reshape(-1, t.shape[-1]) if t.dim() > 0 else t.reshape(1, 1)
    for row in rows.tolist():
        lines.append(" ".join(fmt(v) for v in row))
    return lines


def causal_mask(n):
    """Top-left causal additive mask: 0 for j <= i, -inf for j > i."""
    m = torch.zeros(n, n, dtype=torch.float64)
    return m.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))


def run_case(name, seed, batch, n_q, n_kv, d_model, d_kv, n_heads, bias,
             self_attn, weights_mode, kpm=None, attn_mask=None, causal=False):
    torch.manual_seed(seed)
    if self_attn:
        assert n_q == n_kv and d_kv == d_model

    mha = nn.MultiheadAttention(embed_dim=d_model, num_heads=n_heads,
                                dropout=0.0, bias=bias, kdim=d_kv, vdim=d_kv,
                                batch_first=True)
    mha.double()
    mha.eval()
    with torch.no_grad():
        # Non-trivial parameters: every weight and bias ~ N(0, 0.5).
        for p in mha.parameters():
            p.normal_(0.0, 0.5)

    x_q = torch.randn(batch, n_q, d_model, dtype=torch.float64)
    if self_attn:
        x_kv = x_q
    else:
        x_kv = torch.randn(batch, n_kv, d_kv, dtype=torch.float64)

    if attn_mask is not None:
        attn_mask = attn_mask.to(torch.float64)
        assert attn_mask.shape == (n_q, n_kv)
        assert bool(torch.isfinite(attn_mask).any(dim=1).all()), "fully masked row"
    if causal:
        assert attn_mask is not None and torch.equal(attn_mask, causal_mask(n_q))
    kpm_bool = None
    if kpm is not None:
        kpm_bool = torch.tensor(kpm, dtype=torch.bool)
        assert kpm_bool.shape == (batch, n_kv)
        assert bool((~kpm_bool).any(dim=1).all()), "batch with no valid key"

    # Parameters keep requires_grad=True and grad mode stays on, so
    # MultiheadAttention takes the reference (non-fused) code path.
    out, weights = mha(x_q, x_kv, x_kv,
                       key_padding_mask=kpm_bool,
                       need_weights=weights_mode != 0,
                       attn_mask=attn_mask,
                       average_attn_weights=weights_mode == 1)
    assert out.shape == (batch, n_q, d_model)
    if weights_mode == 0:
        assert weights is None
    elif weights_mode == 1:
        assert weights.shape == (batch, n_q, n_kv)
    else:
        assert weights.shape == (batch, n_heads, n_q, n_kv)

    E = d_model
    if mha._qkv_same_embed_dim:
        w_q, w_k, w_v = mha.in_proj_weight.split(E, dim=0)
    else:
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    assert w_q.shape == (E, E) and w_k.shape == (E, d_kv) and w_v.shape == (E, d_kv)

    ints = dict(batch=batch, n_q=n_q, n_kv=n_kv, d_model=d_model, d_kv=d_kv,
                n_heads=n_heads, bias=int(bias), self=int(self_attn),
                causal=int(causal), weights_mode=weights_mode,
                has_key_padding_mask=int(kpm is not None),
                has_attn_mask=int(attn_mask is not None))

    lines = ["attn-golden 1"]
    lines += ["int %s %d" % (k, ints[k]) for k in INT_FIELDS]
    lines += tensor_block("x_q", x_q)
    lines += tensor_block("x_kv", x_kv)
    lines += tensor_block("w_q", w_q)
    lines += tensor_block("w_k", w_k)
    lines += tensor_block("w_v", w_v)
    lines += tensor_block("w_o", mha.out_proj.weight)
    if bias:
        b_q, b_k, b_v = mha.in_proj_bias.split(E, dim=0)
        lines += tensor_block("b_q", b_q)
        lines += tensor_block("b_k", b_k)
        lines += tensor_block("b_v", b_v)
        lines += tensor_block("b_o", mha.out_proj.bias)
    if kpm is not None:
        lines.append("tensor key_padding_mask %d" % kpm_bool.numel())
        for row in kpm_bool.int().tolist():
            lines.append(" ".join(str(v) for v in row))
    if attn_mask is not None:
        lines += tensor_block("attn_mask", attn_mask)
    lines += tensor_block("out", out)
    if weights_mode != 0:
        lines += tensor_block("weights", weights)
    lines.append("end")

    path = os.path.join(DATA_DIR, name + ".txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes)" % (os.path.relpath(path), os.path.getsize(path)))


def random_attn_mask(seed, n_q, n_kv, n_inf):
    """N(0,1) additive mask with n_inf -inf entries, no fully masked row."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n_q, n_kv, generator=g, dtype=torch.float64)
    perm = torch.randperm(n_q * n_kv, generator=g)
    placed = 0
    for idx in perm.tolist():
        if placed == n_inf:
            break
        i, j = divmod(idx, n_kv)
        if int(torch.isinf(m[i]).sum()) < n_kv - 1:
            m[i, j] = float("-inf")
            placed += 1
    return m


def main():
    os.makedirs(DATA_DIR, exist_ok=True)

    run_case("mha_bias", 101, batch=2, n_q=5, n_kv=5, d_model=8, d_kv=8,
             n_heads=2, bias=True, self_attn=True, weights_mode=1)

    run_case("mha_nobias", 102, batch=2, n_q=6, n_kv=6, d_model=12, d_kv=12,
             n_heads=3, bias=False, self_attn=True, weights_mode=2)

    # batch 0: keys 1 and 3 padded (not a suffix, 5 valid);
    # batch 1: 4 valid keys then padding; batch 2: only key 0 valid.
    kpm = [[0, 1, 0, 1, 0, 0, 0],
           [0, 0, 0, 0, 1, 1, 1],
           [0, 1, 1, 1, 1, 1, 1]]
    run_case("mha_padding", 103, batch=3, n_q=7, n_kv=7, d_model=16, d_kv=16,
             n_heads=4, bias=True, self_attn=True, weights_mode=1, kpm=kpm)

    run_case("mha_attn_mask", 104, batch=2, n_q=6, n_kv=6, d_model=8, d_kv=8,
             n_heads=2, bias=True, self_attn=True, weights_mode=2,
             attn_mask=random_attn_mask(204, 6, 6, n_inf=5))

    run_case("mha_causal", 105, batch=2, n_q=9, n_kv=9, d_model=16, d_kv=16,
             n_heads=4, bias=True, self_attn=True, weights_mode=1,
             attn_mask=causal_mask(9), causal=True)

    # kdim = vdim = 6 != E: separate q/k/v projection weights.
    # batch 1 (second batch): key 6 padded; batch 0 unpadded.
    kpm = [[0] * 9,
           [0, 0, 0, 0, 0, 0, 1, 0, 0]]
    run_case("mha_cross", 106, batch=2, n_q=4, n_kv=9, d_model=8, d_kv=6,
             n_heads=2, bias=True, self_attn=False, weights_mode=1, kpm=kpm)

    run_case("mha_cross_same_dim", 107, batch=1, n_q=3, n_kv=5, d_model=8,
             d_kv=8, n_heads=2, bias=False, self_attn=False, weights_mode=0)


if __name__ == "__main__":
    main()
