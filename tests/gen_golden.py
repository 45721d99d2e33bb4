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

tests/data/modifiers.txt holds attn_sdpa cases with the score modifiers (sliding
window, soft-cap, sinks, ALiBi; with GQA, both causal alignments, ragged kv_len
and a 3000-key decoding step), computed in float64 with explicit PyTorch
formulas (modifiers_ref): "attn-modifiers 1", "int cases K", then per case
"case NAME", the int fields batch, n_heads, n_kv_heads, n_q, n_kv, d_k, d_v,
causal (0 none, 1 top-left, 2 bottom-right), window, window_left, window_right,
has_kv_len, has_sinks, has_alibi, alibi_standard (the slopes are
attn_alibi_slopes(n_heads, alibi_max_bias)), the tensors scale, softcap,
[alibi_max_bias], [kv_len [B]], [sinks [Hq]], [alibi_slopes [Hq]],
q [B, Hq, Nq, Dk], k [B, Hkv, Nk, Dk], v [B, Hkv, Nk, Dv], out [B, Hq, Nq, Dv]
and lse [B, Hq, Nq]; then "end". Inputs are exact float32 values (multiples of
1/2, integers in the decoding case, to keep the file small); out and lse have
9 significant digits.

tests/data/backward.txt holds attn_sdpa_backward cases: the gradients dq, dk, dv
(and dsinks) of L = sum(dout * out) by PyTorch autograd in float64 through
modifiers_ref (with an optional additive mask): "attn-backward 1", "int cases K",
then per case "case NAME", the int fields of a modifiers case without
alibi_standard and with has_mask, the tensors scale, softcap, [kv_len], [sinks],
[alibi_slopes], [mask [Nq, Nk]], q, k, v, dout [B, Hq, Nq, Dv], dq, dk, dv,
[dsinks [Hq]]; then "end". Inputs are multiples of 1/2 (the mask of 1/4).
tests/data/mha_backward.txt holds attn_self_backward cases: nn.MultiheadAttention
(self-attention, batch_first, float64) and autograd's gradients of
L = sum(dout * out): "attn-mha-backward 1", "int cases K", then per case
"case NAME", the int fields batch, n, d_model, n_heads, bias, causal,
has_key_padding_mask, the tensors x, w_q, w_k, w_v, w_o (OUT_IN: in_proj_weight
split in three, out_proj.weight), [b_q, b_k, b_v, b_o], [key_padding_mask],
dout, dx, dw_q, dw_k, dw_v, dw_o, [db_q, db_k, db_v, db_o]; then "end".

Needs Debian's PyTorch (apt install python3-torch), hence the /usr/bin/python3
shebang.  Run from the repo root as:

    /usr/bin/python3 tests/gen_golden.py            # every fixture
    /usr/bin/python3 tests/gen_golden.py rope       # only rope.txt (or: mha, modifiers, backward)

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


CAUSAL_NONE, CAUSAL_TOP_LEFT, CAUSAL_BOTTOM_RIGHT = 0, 1, 2


def f32(v):
    """v rounded to float32 (the C test reads every number as a float), held in float64."""
    return float(torch.tensor(v, dtype=torch.float32))


def alibi_standard(n_heads, max_bias=8.0):
    """ggml's and BLOOM's ALiBi slopes for n_heads: with n = 2^floor(log2(n_heads)),
    2^(-max_bias (h + 1) / n) for h < n, then 2^(-max_bias (2 (h - n) + 1) / 2n)."""
    n = 2 ** (n_heads.bit_length() - 1)
    return [f32(2.0 ** (-max_bias * (h + 1) / n) if h < n else
                2.0 ** (-max_bias / (2 * n) * (2 * (h - n) + 1))) for h in range(n_heads)]


def modifiers_ref(q, k, v, scale, causal, window, wl, wr, softcap, sinks, slopes, kv_len, mask=None):
    """Attention with the score modifiers, in float64, straight from their definitions:
    s = scale * q @ k^T; soft-cap c * tanh(s / c) (Gemma 2); ALiBi -slope_h * |g_i - j|; the
    causal and sliding-window masks from the diagonal g_i (i top-left, else i + n - Nq with n the
    batch's valid keys: FlashAttention's window_size, key j visible iff g_i - wl <= j <= g_i + wr,
    -1 no limit, causal hides j > g_i); sinks: one logit per head concatenated to the scores as an
    extra column for the softmax, then dropped (gpt-oss); softmax; @ v. Also the log-sum-exp of
    each row, the sink included. mask: an additive [Nq, Nk] float mask (after ALiBi), or None.
    Returns out [B, Hq, Nq, Dv] and lse [B, Hq, Nq]. Differentiable (the backward fixtures)."""
    B, Hq, Nq, _ = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    group = Hq // Hkv
    k = k.repeat_interleave(group, dim=1)  # query head h reads kv head h // group
    v = v.repeat_interleave(group, dim=1)
    outs, lses = [], []
    for b in range(B):
        n = kv_len[b] if kv_len is not None else Nk
        kb, vb = k[b, :, :n], v[b, :, :n]  # keys past kv_len[b] are not part of the batch
        s = scale * q[b] @ kb.transpose(-1, -2)  # [Hq, Nq, n]
        if softcap > 0:
            s = softcap * torch.tanh(s / softcap)
        i = torch.arange(Nq, dtype=torch.float64)[:, None]
        j = torch.arange(n, dtype=torch.float64)[None, :]
        g = i if causal == CAUSAL_TOP_LEFT else i + (n - Nq)
        if slopes is not None:
            s = s - torch.tensor(slopes, dtype=torch.float64)[:, None, None] * (g - j).abs()
        if mask is not None:
            s = s + mask[:, :n]
        visible = torch.ones(Nq, n, dtype=torch.bool)
        if causal != CAUSAL_NONE:
            visible &= j <= g
        if window:
            if wl >= 0:
                visible &= j >= g - wl
            if wr >= 0:
                visible &= j <= g + wr
        assert bool(visible.any(dim=1).all()), "a query with no visible key"
        s = s.masked_fill(~visible, float("-inf"))
        if sinks is not None:
            sk = sinks if torch.is_tensor(sinks) else torch.tensor(sinks, dtype=torch.float64)
            col = sk.reshape(Hq, 1, 1).expand(Hq, Nq, 1)
            s = torch.cat((s, col), dim=-1)
        lses.append(torch.logsumexp(s, dim=-1))
        w = torch.softmax(s, dim=-1)
        if sinks is not None:
            w = w[..., :-1]
        outs.append(w @ vb)
    return torch.stack(outs), torch.stack(lses)


def fmt_short(v):
    """Inputs: exact float32 values, integers without a fraction."""
    v = float(v)
    if v != v:
        return "nan"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return fmt(v)


def short_block(name, t, fn=fmt_short):
    t = t.detach().to(torch.float64).contiguous()
    lines = ["tensor %s %d" % (name, t.numel())]
    for row in t.reshape(-1, t.shape[-1]).tolist():
        lines.append(" ".join(fn(x) for x in row))
    return lines


def fmt_out(v):
    """Expected outputs: 9 significant digits (5e-9 relative, far below the test's 1e-5)."""
    v = float(v)
    if v in (float("inf"), float("-inf")) or v != v:
        return fmt(v)
    return "%.9g" % v


def modifiers_case(name, seed, batch, n_heads, n_kv_heads, n_q, n_kv, d_k, d_v, amp=1.0, quant=2,
                   scale=None, causal=CAUSAL_NONE, window=None, softcap=0.0, sinks=None,
                   slopes=None, alibi_standard_max_bias=0.0, kv_len=None):
    """One case: q, k, v ~ amp * N(0, 1) rounded to multiples of 1/quant (exact in float32 and short
    in the file; quant 1: integers), the expected out and lse from modifiers_ref. window is
    (window_left, window_right) or None; scale None is 1/sqrt(d_k) (rounded to float32, as every
    parameter: the C test passes the values read from the file)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * amp
        return torch.round(x * quant) / quant

    q = rnd(batch, n_heads, n_q, d_k)
    k = rnd(batch, n_kv_heads, n_kv, d_k)
    v = rnd(batch, n_kv_heads, n_kv, d_v)
    if kv_len is not None:
        for b in range(batch):  # keys past kv_len[b] are never read: NaN there checks it
            k[b, :, kv_len[b]:] = float("nan")
            v[b, :, kv_len[b]:] = float("nan")
    scale = f32(1.0 / d_k ** 0.5 if scale is None else scale)
    wl, wr = window if window is not None else (0, 0)
    out, lse = modifiers_ref(q, k, v, scale, causal, window is not None, wl, wr, softcap, sinks,
                             slopes, kv_len)
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(lse).all())
    ints = [("batch", batch), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads), ("n_q", n_q),
            ("n_kv", n_kv), ("d_k", d_k), ("d_v", d_v), ("causal", causal),
            ("window", int(window is not None)), ("window_left", wl), ("window_right", wr),
            ("has_kv_len", int(kv_len is not None)), ("has_sinks", int(sinks is not None)),
            ("has_alibi", int(slopes is not None)), ("alibi_standard", int(alibi_standard_max_bias > 0))]
    lines = ["case %s" % name] + ["int %s %d" % kv for kv in ints]
    lines += tensor_block("scale", torch.tensor([scale]))
    lines += tensor_block("softcap", torch.tensor([f32(softcap)]))
    if alibi_standard_max_bias > 0:
        lines += tensor_block("alibi_max_bias", torch.tensor([alibi_standard_max_bias]))
    if kv_len is not None:
        lines += tensor_block("kv_len", torch.tensor(kv_len, dtype=torch.float64))
    if sinks is not None:
        assert all(f32(x) == x for x in sinks)
        lines += tensor_block("sinks", torch.tensor(sinks, dtype=torch.float64))
    if slopes is not None:
        assert all(f32(x) == x for x in slopes)
        lines += tensor_block("alibi_slopes", torch.tensor(slopes, dtype=torch.float64))
    lines += short_block("q", q)
    lines += short_block("k", k)
    lines += short_block("v", v)
    lines += short_block("out", out, fmt_out)
    lines += short_block("lse", lse, fmt_out)
    return lines


def write_modifiers():
    """The score modifiers of attn_sdpa: sliding windows, soft-capping, sinks, ALiBi, each alone and
    all together with GQA, ragged kv_len and a decoding step over 3000 keys (key chunks)."""
    cases = [
        # Mistral: sliding_window W = 16 is causal with window_left = W - 1
        modifiers_case("window_mistral", 401, 1, 2, 2, 48, 48, 8, 8,
                       causal=CAUSAL_TOP_LEFT, window=(15, 0)),
        # both sides, no causal option: the bottom-right diagonal g_i = i + Nk - Nq
        modifiers_case("window_both_sides", 402, 1, 2, 2, 16, 40, 8, 8, window=(6, 3)),
        # one side only (-1: no limit on the other), bottom-right diagonal
        modifiers_case("window_right_only", 403, 1, 1, 1, 16, 32, 8, 8, window=(-1, 2)),
        # Gemma 2: soft-cap 50 with scaled logits up to ~200
        modifiers_case("softcap_gemma2", 404, 1, 2, 2, 24, 24, 8, 8, amp=7.0, softcap=50.0),
        # gpt-oss: one sink logit per head, -inf = no sink; causal, so the first rows see few keys
        modifiers_case("sinks", 405, 1, 4, 4, 20, 20, 8, 8, causal=CAUSAL_TOP_LEFT,
                       sinks=[0.5, -1.25, 2.0, float("-inf")]),
        # ALiBi, the standard slopes (1/2 .. 1/256 for 8 heads), no causal: |g_i - j| on both sides
        # of the bottom-right diagonal g_i = i + 12
        modifiers_case("alibi_8_heads", 406, 1, 8, 8, 8, 20, 8, 8, slopes=alibi_standard(8),
                       alibi_standard_max_bias=8.0),
        # 6 heads: 2^-2, 2^-4, 2^-6, 2^-8, then 2^-1, 2^-3; bottom-right causal
        modifiers_case("alibi_6_heads", 407, 1, 6, 6, 12, 16, 8, 8, causal=CAUSAL_BOTTOM_RIGHT,
                       slopes=alibi_standard(6), alibi_standard_max_bias=8.0),
        # top-left causal with Nq < Nk: g_i = i
        modifiers_case("alibi_causal_top_left", 408, 1, 4, 4, 12, 20, 8, 8, causal=CAUSAL_TOP_LEFT,
                       slopes=alibi_standard(4), alibi_standard_max_bias=8.0),
        # GQA (6 query heads over 2 kv heads) with everything: window, soft-cap, sinks, ALiBi
        # (standard slopes for max_bias 4), bottom-right causal, Dv != Dk, a scale of its own
        modifiers_case("gqa_all", 409, 2, 6, 2, 12, 24, 12, 8, amp=2.0, scale=0.3,
                       causal=CAUSAL_BOTTOM_RIGHT, window=(7, -1), softcap=20.0,
                       sinks=[1.0, -0.5, float("-inf"), 3.0, 0.0, -2.0],
                       slopes=alibi_standard(6, 4.0), alibi_standard_max_bias=4.0),
        # ragged batch: kv_len [28, 17], the bottom-right diagonal ends at each batch's last key;
        # K and V are NaN past kv_len (never read)
        modifiers_case("ragged_kv_len_alibi", 410, 2, 4, 4, 6, 28, 8, 8, causal=CAUSAL_BOTTOM_RIGHT,
                       slopes=alibi_standard(4), alibi_standard_max_bias=8.0, kv_len=[28, 17]),
        # decoding: one query over 3000 keys (two 2048-key chunks), no causal option, the window
        # [1499, 2999] across the chunk boundary, with sinks, soft-cap and small ALiBi slopes (so
        # that the window matters); integer K and V keep the file small
        modifiers_case("decode_3000_keys", 411, 1, 4, 1, 1, 3000, 8, 8, quant=1,
                       window=(1500, -1), softcap=10.0, sinks=[0.25, float("-inf"), 4.0, -1.0],
                       slopes=[f32(1e-3), f32(3e-4), 0.0, f32(2e-3)]),
    ]
    lines = ["attn-modifiers 1", "int cases %d" % len(cases)]
    for c in cases:
        lines += c
    lines.append("end")
    path = os.path.join(DATA_DIR, "modifiers.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes)" % (os.path.relpath(path), os.path.getsize(path)))


def backward_case(name, seed, batch, n_heads, n_kv_heads, n_q, n_kv, d_k, d_v, scale=None,
                  causal=CAUSAL_NONE, window=None, softcap=0.0, sinks=None, slopes=None,
                  alibi_standard_max_bias=0.0, kv_len=None, with_mask=False):
    """One backward case: q, k, v, dout ~ N(0, 1) rounded to multiples of 1/2 (exact in float32),
    [an additive mask [Nq, Nk] in multiples of 1/4], the forward of modifiers_ref in float64 and
    PyTorch autograd's gradients of L = sum(dout * out): dq, dk, dv [, dsinks]."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, quant=2):
        return torch.round(torch.randn(*shape, generator=g, dtype=torch.float64) * quant) / quant

    q = rnd(batch, n_heads, n_q, d_k).requires_grad_()
    k = rnd(batch, n_kv_heads, n_kv, d_k).requires_grad_()
    v = rnd(batch, n_kv_heads, n_kv, d_v).requires_grad_()
    dout = rnd(batch, n_heads, n_q, d_v)
    mask = rnd(n_q, n_kv, quant=4) if with_mask else None
    sk = torch.tensor(sinks, dtype=torch.float64, requires_grad=True) if sinks is not None else None
    scale = f32(1.0 / d_k ** 0.5 if scale is None else scale)
    wl, wr = window if window is not None else (0, 0)
    out, _ = modifiers_ref(q, k, v, scale, causal, window is not None, wl, wr, softcap, sk, slopes,
                           kv_len, mask)
    (out * dout).sum().backward()
    for t in (q.grad, k.grad, v.grad):
        assert bool(torch.isfinite(t).all())
    ints = [("batch", batch), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads), ("n_q", n_q),
            ("n_kv", n_kv), ("d_k", d_k), ("d_v", d_v), ("causal", causal),
            ("window", int(window is not None)), ("window_left", wl), ("window_right", wr),
            ("has_kv_len", int(kv_len is not None)), ("has_sinks", int(sinks is not None)),
            ("has_alibi", int(slopes is not None)), ("has_mask", int(with_mask))]
    lines = ["case %s" % name] + ["int %s %d" % kv for kv in ints]
    lines += tensor_block("scale", torch.tensor([scale]))
    lines += tensor_block("softcap", torch.tensor([f32(softcap)]))
    if kv_len is not None:
        lines += tensor_block("kv_len", torch.tensor(kv_len, dtype=torch.float64))
    if sinks is not None:
        assert all(f32(x) == x for x in sinks)
        lines += tensor_block("sinks", torch.tensor(sinks, dtype=torch.float64))
    if slopes is not None:
        assert all(f32(x) == x for x in slopes)
        lines += tensor_block("alibi_slopes", torch.tensor(slopes, dtype=torch.float64))
    if with_mask:
        lines += short_block("mask", mask)
    lines += short_block("q", q)
    lines += short_block("k", k)
    lines += short_block("v", v)
    lines += short_block("dout", dout)
    lines += short_block("dq", q.grad, fmt_out)
    lines += short_block("dk", k.grad, fmt_out)
    lines += short_block("dv", v.grad, fmt_out)
    if sinks is not None:
        lines += short_block("dsinks", sk.grad, fmt_out)
    return lines


def write_backward():
    """Gradients of attention by PyTorch autograd (float64) through modifiers_ref, for
    attn_sdpa_backward: GQA with Dk != Dv, bottom-right causal with an additive mask, MQA with
    soft-cap, sinks, ALiBi and a sliding window, and a ragged kv_len batch."""
    cases = [
        backward_case("gqa_plain", 501, 2, 4, 2, 10, 13, 8, 6),
        backward_case("causal_mask", 502, 1, 2, 2, 9, 12, 8, 8, causal=CAUSAL_BOTTOM_RIGHT,
                      with_mask=True, scale=0.5),
        backward_case("mqa_softcap_sinks_alibi_window", 503, 1, 4, 1, 12, 12, 8, 8,
                      causal=CAUSAL_TOP_LEFT, window=(5, -1), softcap=3.0,
                      sinks=[0.5, -1.0, 2.0, float("-inf")], slopes=alibi_standard(4)),
        backward_case("ragged_kv_len", 504, 2, 2, 2, 6, 20, 8, 8, causal=CAUSAL_BOTTOM_RIGHT,
                      kv_len=[20, 9]),
    ]
    lines = ["attn-backward 1", "int cases %d" % len(cases)]
    for c in cases:
        lines += c
    lines.append("end")
    path = os.path.join(DATA_DIR, "backward.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes)" % (os.path.relpath(path), os.path.getsize(path)))


def mha_backward_case(name, seed, batch, n, d_model, n_heads, bias, causal=False, kpm=None):
    """torch.nn.MultiheadAttention (batch_first, float64, self-attention) and autograd's gradients of
    L = sum(dout * out): dx and the gradients of in_proj_weight (split into w_q, w_k, w_v: attn_mha's
    OUT_IN layout), in_proj_bias, out_proj.weight and .bias. Inputs rounded to float32 values."""
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(embed_dim=d_model, num_heads=n_heads, dropout=0.0, bias=bias,
                                batch_first=True)
    mha.double()
    with torch.no_grad():
        for p in mha.parameters():
            p.copy_(torch.randn_like(p).mul_(0.5).float().double())
    x = torch.randn(batch, n, d_model, dtype=torch.float64).float().double().requires_grad_()
    dout = torch.randn(batch, n, d_model, dtype=torch.float64).float().double()
    kpm_bool = torch.tensor(kpm, dtype=torch.bool) if kpm is not None else None
    out, _ = mha(x, x, x, key_padding_mask=kpm_bool, need_weights=False,
                 attn_mask=causal_mask(n) if causal else None)
    (out * dout).sum().backward()
    E = d_model
    ints = [("batch", batch), ("n", n), ("d_model", d_model), ("n_heads", n_heads), ("bias", int(bias)),
            ("causal", int(causal)), ("has_key_padding_mask", int(kpm is not None))]
    lines = ["case %s" % name] + ["int %s %d" % kv for kv in ints]
    lines += tensor_block("x", x)
    for nm, t in zip(("w_q", "w_k", "w_v"), mha.in_proj_weight.split(E, dim=0)):
        lines += tensor_block(nm, t)
    lines += tensor_block("w_o", mha.out_proj.weight)
    if bias:
        for nm, t in zip(("b_q", "b_k", "b_v"), mha.in_proj_bias.split(E, dim=0)):
            lines += tensor_block(nm, t)
        lines += tensor_block("b_o", mha.out_proj.bias)
    if kpm is not None:
        lines.append("tensor key_padding_mask %d" % kpm_bool.numel())
        for row in kpm_bool.int().tolist():
            lines.append(" ".join(str(v) for v in row))
    lines += tensor_block("dout", dout)
    lines += short_block("dx", x.grad, fmt_out)
    for nm, t in zip(("dw_q", "dw_k", "dw_v"), mha.in_proj_weight.grad.split(E, dim=0)):
        lines += short_block(nm, t, fmt_out)
    lines += short_block("dw_o", mha.out_proj.weight.grad, fmt_out)
    if bias:
        for nm, t in zip(("db_q", "db_k", "db_v"), mha.in_proj_bias.grad.split(E, dim=0)):
            lines += short_block(nm, t, fmt_out)
        lines += short_block("db_o", mha.out_proj.bias.grad, fmt_out)
    return lines


def write_mha_backward():
    """attn_self_backward against PyTorch's nn.MultiheadAttention autograd: biases, a causal mask, key
    padding."""
    cases = [
        mha_backward_case("bias", 601, 2, 6, 8, 2, True),
        mha_backward_case("causal_padding_nobias", 602, 2, 7, 12, 3, False, causal=True,
                          kpm=[[0, 0, 0, 0, 0, 1, 1], [0, 1, 0, 0, 0, 0, 0]]),
    ]
    lines = ["attn-mha-backward 1", "int cases %d" % len(cases)]
    for c in cases:
        lines += c
    lines.append("end")
    path = os.path.join(DATA_DIR, "mha_backward.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes)" % (os.path.relpath(path), os.path.getsize(path)))


def main():
    os.makedirs(DATA_DIR, exist_ok=True)
    names = sys.argv[1:]
    if names:
        unknown = set(names) - {"mha", "rope", "modifiers", "backward"}
        if unknown:
            sys.exit("unknown fixture group(s): %s (mha, rope, modifiers, backward)" % " ".join(sorted(unknown)))
    if not names or "rope" in names:
        write_rope()
    if not names or "modifiers" in names:
        write_modifiers()
    if not names or "backward" in names:
        write_backward()
        write_mha_backward()
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
