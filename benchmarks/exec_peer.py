"""exec_peer.py — the exec: protocol (docs/exec-protocol.md) for the PyTorch peers in benchmarks/
(torch_sdpa.py, torch_flex.py, flash_attn_peer.py): the request, inputs from the request's .npy
files or from its seed on the GPU, CUDA-event timing of warm-up + repeats, and the replies. Each
peer supplies only make_call(torch, req, q, k, v) → a function returning (O, LSE or None)."""
import json
import sys


def refuse(peer, why):
    print(f"{peer}: error: {why}", file=sys.stderr)
    sys.exit(2)


def load_torch(peer, device):
    try:
        import torch
    except ImportError as e:
        refuse(peer, f"PyTorch is not installed ({e})")
    if not torch.cuda.is_available():
        refuse(peer, f"no CUDA device: torch {torch.__version__} sees no GPU; the peer only runs on a GPU")
    if device >= torch.cuda.device_count():
        refuse(peer, f"no CUDA device {device}: this machine has {torch.cuda.device_count()}")
    torch.cuda.set_device(device)
    return torch


def torch_dtype(torch, name):
    return getattr(torch, {"bf16": "bfloat16", "f16": "float16", "f32": "float32", "f64": "float64"}[name])


def seeded_inputs(torch, req):
    """Q (B, H, n_q, d), K and V (B, H_kv, n_k, d) made on the GPU from the request's seed."""
    dev = torch.device("cuda", req["device"])
    dt = torch_dtype(torch, req["dtype"])
    g = torch.Generator(device=dev).manual_seed(req["seed"])
    B, H, Hkv, d = req["batch"], req["heads"], req["kv_heads"], req["head_dim"]
    return (torch.randn(B, H, req["n_q"], d, device=dev, dtype=dt, generator=g),
            torch.randn(B, Hkv, req["n_k"], d, device=dev, dtype=dt, generator=g),
            torch.randn(B, Hkv, req["n_k"], d, device=dev, dtype=dt, generator=g))


def file_inputs(torch, req):
    """Q, K, V from the request's float32 .npy files, on the GPU in the request's dtype (bf16 or
    f16 cases: .to rounds to nearest even, as attnbench's GPU upload does)."""
    import numpy as np
    dev = torch.device("cuda", req["device"])
    dt = torch_dtype(torch, req["dtype"])
    return tuple(torch.from_numpy(np.load(req[x])).to(dev).to(dt) for x in ("q", "k", "v"))


def reference_lse(torch, req, q, k):
    """LSE in float32 from the inputs as the peer saw them, for peers whose kernel does not return
    it (SDPA): an n_q × n_k float32 score matrix per (batch, head), so exactness sizes only."""
    H, Hkv = req["heads"], req["kv_heads"]
    kk = k.float().repeat_interleave(H // Hkv, dim=1)
    s = torch.matmul(q.float(), kk.transpose(-1, -2)) * req["scale"]
    i = req["q_start"] + torch.arange(req["n_q"], device=q.device)[:, None]
    j = req["k_start"] + torch.arange(req["n_k"], device=q.device)[None, :]
    if req["mask"] != "none":
        vis = j <= i
        if req["mask"] == "window":
            vis &= j > i - req["window"]
        s = s.masked_fill(~vis, float("-inf"))
    return torch.logsumexp(s, dim=-1)


def time_calls(torch, call, warmup, repeats):
    """Seconds of each of `repeats` calls, CUDA events around the one call, after `warmup`."""
    with torch.no_grad():
        for _ in range(warmup):
            call()
        torch.cuda.synchronize()
        secs = []
        for _ in range(repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            stop.record()
            stop.synchronize()
            secs.append(start.elapsed_time(stop) / 1e3)
    return secs


UNAVAILABLE = 77  # the exit status of --version when the peer cannot run here (impls/exec.c)


def gpu_torch_version():
    """"torch X" when torch with a visible GPU is importable; else the reason, as RuntimeError."""
    try:
        import torch
    except ImportError as e:
        raise RuntimeError(f"PyTorch is not installed ({e})")
    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no GPU")
    return f"torch {torch.__version__}"


def serve(peer, argv, make_call, version):
    """The protocol's entry: --version, forward REQ.json or time REQ.json. Returns the exit status.
    version() returns the version line or raises RuntimeError saying why the peer cannot run here;
    attnbench then records every case of the peer as skipped with that reason."""
    if argv == ["--version"]:
        try:
            print(version())
        except RuntimeError as e:
            print(f"{peer}: {e}", file=sys.stderr)
            return UNAVAILABLE
        return 0
    with open(argv[1]) as f:
        req = json.load(f)
    torch = load_torch(peer, req["device"])
    if argv[0] == "time":
        q, k, v = seeded_inputs(torch, req)
        call = make_call(torch, req, q, k, v)
        print(json.dumps({"seconds": time_calls(torch, call, req["warmup"], req["repeats"]), "timing": "cuda_events"}))
        return 0
    import numpy as np
    q, k, v = file_inputs(torch, req)
    with torch.no_grad():
        o, lse = make_call(torch, req, q, k, v)()
        if lse is None:
            lse = reference_lse(torch, req, q, k)
    np.save(req["o"], o.float().cpu().numpy())
    np.save(req["lse"], lse.float().cpu().numpy())
    return 0


def is_protocol(argv):
    return argv == ["--version"] or (len(argv) == 2 and argv[0] in ("forward", "time"))
