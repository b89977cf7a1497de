#!/usr/bin/env python3
"""flash_attn_peer.py — the flash_attn package (Dao-AILab) as an attnbench exec: peer
(docs/exec-protocol.md): `attnbench run --exec-spec benchmarks/peers/flash_attn.json
--backends exec:flash_attn ...`. flash_attn_func takes (B, n, H, d): the transposes are made once,
outside the timed call. Its causal mask and window are aligned to the bottom-right corner (v2.1 on),
which is attnbench's layout (queries at the end of the keys): causal, and window w as
window_size = (w − 1, 0). GQA native; LSE from return_attn_probs. bf16/f16 only. Without the package
or a GPU, `--version` says why and attnbench records every case as skipped.
usage: flash_attn_peer.py --version | forward REQUEST.json | time REQUEST.json"""
import sys

import exec_peer


def version():
    exec_peer.gpu_torch_version()
    try:
        import flash_attn
    except ImportError as e:
        raise RuntimeError(f"the flash_attn package is not installed ({e})")
    return f"flash_attn {flash_attn.__version__}"


def make_call(torch, req, q, k, v):
    from flash_attn import flash_attn_func
    if req["q_start"] != req["n_k"] - req["n_q"] or req["k_start"] != 0:
        raise RuntimeError("flash_attn aligns queries to the end of the keys only")
    qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))  # (B, n, H, d)
    causal = req["mask"] != "none"
    window = (req["window"] - 1, 0) if req["mask"] == "window" else (-1, -1)

    def call():
        o, lse, _ = flash_attn_func(qt, kt, vt, softmax_scale=req["scale"], causal=causal, window_size=window,
                                    return_attn_probs=True)
        return o.transpose(1, 2), lse  # O back to (B, H, n_q, d); LSE is (B, H, n_q)

    return call


if __name__ == "__main__":
    if not exec_peer.is_protocol(sys.argv[1:]):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(exec_peer.serve("flash_attn_peer.py", sys.argv[1:], make_call, version))
