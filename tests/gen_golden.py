#!/usr/bin/python3
"""Generate the golden fixtures in tests/data/ for the attention.h C tests.

Each fixture tests/data/mha_<case>.txt holds the inputs, parameters and
expected outputs of one torch.nn.MultiheadAttention (batch_first=True, eval
mode, no dropout) call, computed in float64, as a whitespace-separated text
file ("attn-golden 1", the int fields, the tensors, then "end").

tests/data/rope.txt holds rotary position embedding cases computed with the
explicit PyTorch formulas of Hugging Face transformers in float64 (Llama's
rotate_half for NEOX style, GPT-J's rotate_every_two for GPTJ style):
"attn-rope 1", "int cases K", then per case the int fields batch, n_heads, n,
d, style (1 NEOX, 2 GPTJ), n_rot and the tensors theta, freq_scale, pos0 [B],
x [B, H, N, D] and out [B, H, N, D]; then "end".

Needs Debian's PyTorch (apt install python3-torch), hence the /usr/bin/python3
shebang.  Run from the repo root as:

    /usr/bin/python3 tests/gen_golden.py            # every fixture
    /usr/bin/python3 tests/gen_golden.py rope       # only rope.txt (or: mha)

This script is only needed to regenerate the fixtures: the C tests read the
files in tests/data/ directly, no Python is needed at test time.
"""

import os
import sys

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


def rope_inv_freq(n_rot, theta):
    """HF's inv_freq: 1 / theta^(2p / n_rot) for p < n_rot/2."""
    return 1.0 / (theta ** (torch.arange(0, n_rot, 2, dtype=torch.float64) / n_rot))


def rope_neox(x, pos, n_rot, theta, freq_scale):
    """Llama / GPT-NeoX: HF's LlamaRotaryEmbedding (linear rope_scaling divides
    the positions by the factor = 1/freq_scale) and apply_rotary_pos_emb with
    rotate_half, on the first n_rot dimensions (GPT-NeoX's rotary_pct)."""
    def rotate_half(u):
        u1, u2 = u[..., : u.shape[-1] // 2], u[..., u.shape[-1] // 2:]
        return torch.cat((-u2, u1), dim=-1)
    t = pos.to(torch.float64) * freq_scale               # [B, N]
    freqs = t[..., None] * rope_inv_freq(n_rot, theta)   # [B, N, n_rot/2]
    emb = torch.cat((freqs, freqs), dim=-1)              # [B, N, n_rot]
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]    # [B, 1, N, n_rot]
    x_rot, x_pass = x[..., :n_rot], x[..., n_rot:]
    return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)


def rope_gptj(x, pos, n_rot, theta, freq_scale):
    """GPT-J: HF's create_sinusoidal_positions and apply_rotary_pos_emb with
    rotate_every_two (pairs 2p, 2p + 1), on the first n_rot dimensions."""
    def rotate_every_two(u):
        u1, u2 = u[..., ::2], u[..., 1::2]
        return torch.stack((-u2, u1), dim=-1).flatten(-2)
    t = pos.to(torch.float64) * freq_scale
    freqs = t[..., None] * rope_inv_freq(n_rot, theta)   # [B, N, n_rot/2]
    sin = freqs.sin().repeat_interleave(2, dim=-1)[:, None]
    cos = freqs.cos().repeat_interleave(2, dim=-1)[:, None]
    x_rot, x_pass = x[..., :n_rot], x[..., n_rot:]
    return torch.cat((x_rot * cos + rotate_every_two(x_rot) * sin, x_pass), dim=-1)


ROPE_NEOX, ROPE_GPTJ = 1, 2


def rope_case(seed, batch, n_heads, n, d, style, n_rot, theta, freq_scale, pos0):
    torch.manual_seed(seed)
    # float32 inputs (the C test loads them as float), held in float64
    x = torch.randn(batch, n_heads, n, d, dtype=torch.float32).to(torch.float64)
    pos = torch.tensor(pos0, dtype=torch.int64)[:, None] + torch.arange(n)[None, :]
    fn = rope_neox if style == ROPE_NEOX else rope_gptj
    out = fn(x, pos, n_rot, theta, freq_scale)
    lines = ["int batch %d" % batch, "int n_heads %d" % n_heads, "int n %d" % n,
             "int d %d" % d, "int style %d" % style, "int n_rot %d" % n_rot]
    lines += tensor_block("theta", torch.tensor([theta]))
    lines += tensor_block("freq_scale", torch.tensor([freq_scale]))
    lines += tensor_block("pos0", torch.tensor(pos0, dtype=torch.float64))
    lines += tensor_block("x", x)
    lines += tensor_block("out", out)
    return lines


def write_rope():
    """Both styles, whole and partial heads, theta 10000 and 500000, linear
    scaling by 4 (freq_scale 0.25), positions up to about 1e6."""
    cases = [
        rope_case(301, 2, 3, 5, 16, ROPE_NEOX, 16, 10000.0, 1.0, [0, 11]),
        rope_case(302, 2, 3, 5, 16, ROPE_GPTJ, 16, 10000.0, 1.0, [0, 11]),
        rope_case(303, 2, 2, 4, 12, ROPE_NEOX, 8, 10000.0, 1.0, [3, 1000000]),
        rope_case(304, 2, 2, 4, 12, ROPE_GPTJ, 8, 10000.0, 1.0, [3, 1000000]),
        rope_case(305, 3, 1, 2, 64, ROPE_NEOX, 64, 500000.0, 0.25, [0, 4097, 999999]),
        rope_case(306, 3, 1, 2, 64, ROPE_GPTJ, 48, 500000.0, 0.25, [0, 4097, 999999]),
    ]
    lines = ["attn-rope 1", "int cases %d" % len(cases)]
    for c in cases:
        lines += c
    lines.append("end")
    path = os.path.join(DATA_DIR, "rope.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes)" % (os.path.relpath(path), os.path.getsize(path)))


def main():
    os.makedirs(DATA_DIR, exist_ok=True)
    names = sys.argv[1:]
    if names:
        unknown = set(names) - {"mha", "rope"}
        if unknown:
            sys.exit("unknown fixture group(s): %s (mha, rope)" % " ".join(sorted(unknown)))
    if not names or "rope" in names:
        write_rope()
    if names and "mha" not in names:
        return

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
