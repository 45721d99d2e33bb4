#!/usr/bin/python3
"""PyTorch beside attention.h: softmax(Q.K^T * scale + causal mask) . V, as PyTorch 1.13 computes it
(torch.matmul, torch.softmax, torch.matmul: Debian's python3-torch has no fused scaled_dot_product_attention,
which arrived in 2.0), on bench.c's sdpa cases, with 1 and 2 threads; and its backward pass by autograd
through the same composition on bench.c's sdpa_bwd cases (dq, dk, dv from dout; the forward, which
autograd needs, untimed; FLOPs counted as bench.c counts them, 2.5x the forward's). Prints one 'bench:' line
per measurement in bench.c's format; compare its gflops with attention.h's in the same minutes.

    /usr/bin/python3 bench/pytorch_bench.py
"""
import time
import torch

CASES = [  # name, H, N, D, causal
    ("sdpa_n2048_d64", 8, 2048, 64, False),
    ("sdpa_n2048_d64_causal", 8, 2048, 64, True),
    ("sdpa_n2048_d128", 8, 2048, 128, False),
    ("sdpa_n512_d64", 8, 512, 64, False),
]

BWD_CASES = [  # name, H, N, D, causal
    ("sdpa_bwd_n2048_d64", 8, 2048, 64, False),
    ("sdpa_bwd_n2048_d64_causal", 8, 2048, 64, True),
    ("sdpa_bwd_n2048_d128", 8, 2048, 128, False),
    ("sdpa_bwd_n2048_d128_causal", 8, 2048, 128, True),
]


def attention(q, k, v, causal, mask):
    s = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if causal:
        s = s + mask
    return torch.matmul(torch.softmax(s, dim=-1), v)


def main():
    torch.manual_seed(0)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, h, n, d, causal in CASES:
            q, k, v = (torch.rand(1, h, n, d) * 2 - 1 for _ in range(3))
            mask = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
            with torch.no_grad():
                attention(q, k, v, causal, mask)
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    attention(q, k, v, causal, mask)
                    times.append(time.perf_counter() - t)
            ms = sorted(times)[len(times) // 2] * 1e3
            flops = 4.0 * h * n * n * d * (0.5 if causal else 1.0)
            print(f"bench: op=sdpa impl=pytorch-{torch.__version__} name={name} B=1 H={h} Hkv={h} Nq={n} Nk={n} "
                  f"D={d} causal={int(causal)} threads={threads} ms={ms:.3f} gflops={flops / ms * 1e-6:.2f}")
        for name, h, n, d, causal in BWD_CASES:
            q, k, v = ((torch.rand(1, h, n, d) * 2 - 1).requires_grad_() for _ in range(3))
            dout = torch.rand(1, h, n, d) * 2 - 1
            mask = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
            times = []
            for rep in range(6):  # the first: warm-up
                out = attention(q, k, v, causal, mask)
                t = time.perf_counter()
                dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
                if rep:
                    times.append(time.perf_counter() - t)
            ms = sorted(times)[len(times) // 2] * 1e3
            flops = 10.0 * h * n * n * d * (0.5 if causal else 1.0)
            print(f"bench: op=sdpa_bwd impl=pytorch-{torch.__version__} name={name} B=1 H={h} Hkv={h} Nq={n} "
                  f"Nk={n} D={d} causal={int(causal)} threads={threads} ms={ms:.3f} gflops={flops / ms * 1e-6:.2f}")


if __name__ == "__main__":
    main()
