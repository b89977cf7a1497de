#!/usr/bin/env python3
"""torch_flex.py — torch's flex_attention as an attnbench exec: peer (docs/exec-protocol.md):
`attnbench run --exec-spec benchmarks/peers/torch_flex.json --backends exec:torch_flex ...`.
The mask is a mask_mod over global positions (query i = q_start + row, key j = k_start + col:
causal j ≤ i, window i − w < j ≤ i) compiled into a block mask; flex_attention is torch.compile'd
once per case (warm-up calls absorb the compilation) and returns its LSE (return_lse). GQA through
enable_gqa. Needs torch ≥ 2.5 with a GPU; otherwise `--version` says why and attnbench records
every case as skipped.
usage: torch_flex.py --version | forward REQUEST.json | time REQUEST.json"""
import sys

import exec_peer


def version():
    v = exec_peer.gpu_torch_version()
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"{v} has no flex_attention ({e}); it needs torch 2.5 or later")
    return v


def make_call(torch, req, q, k, v):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    qs, ks, w, mask = req["q_start"], req["k_start"], req["window"], req["mask"]

    def mask_mod(b, h, row, col):
        i, j = row + qs, col + ks
        vis = j <= i
        return vis & (j > i - w) if mask == "window" else vis

    block_mask = None
    if mask != "none":
        block_mask = create_block_mask(mask_mod, None, None, req["n_q"], req["n_k"], device=q.device)
    fa = torch.compile(flex_attention, dynamic=False)
    gqa = req["heads"] != req["kv_heads"]

    def call():
        return fa(q, k, v, block_mask=block_mask, scale=req["scale"], enable_gqa=gqa, return_lse=True)

    return call


if __name__ == "__main__":
    if not exec_peer.is_protocol(sys.argv[1:]):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(exec_peer.serve("torch_flex.py", sys.argv[1:], make_call, version))
