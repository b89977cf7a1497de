#!/usr/bin/env python3
"""torch_sdpa.py — the peer for the CUDA backends: times torch.nn.functional.scaled_dot_product_attention
on the same GPU and shapes as `attnbench run --task throughput --backends blockwise_cuda --dtype bf16`, and
writes throughput records with backend "torch_sdpa" in attnbench's results format (attnbench.results/1,
core/results.c), so `attnbench report` and `attnbench compare` read them beside attnbench's own files.

Timing follows tasks/throughput.c's device path: inputs already on the GPU, warm-up calls, then repeats
each timed with a pair of CUDA events around the one call; time_s, tokens_per_s and gflops are the
median, with _min and _max. FLOPs are attnbench's: 4·d per visible query-key pair (causal counts
n(n+1)/2 pairs, not n²), times batch·heads. Queries sit at the end of the keys, as in attnbench.

Needs PyTorch with CUDA and a GPU; without them it says so and exits 2, writing nothing. Exits 1 when a
case failed (out of memory, no SDPA kernel for it): its record says why and the others are kept.
usage: benchmarks/torch_sdpa.py [--seq-len 16384] [--mask none,causal] [--out-dir results] [...]

It is also an exec: peer (docs/exec-protocol.md): `attnbench run --exec-spec benchmarks/peers/torch_sdpa.json
--backends exec:torch_sdpa ...` runs it as `torch_sdpa.py forward|time REQUEST.json` (or --version), and
attnbench records its times (the same CUDA-event loop) and checks its O against the float64 reference.
SDPA returns no LSE; in forward mode it is computed beside the call in float32 (exec_peer.reference_lse).

--direction backward (standalone mode only; the exec protocol carries the forward alone): the backward
alone is timed (the forward runs outside the events, then torch.autograd.grad of O with dO, retaining
the graph), FLOPs 2.5 × the forward's as attnbench's throughput --direction backward counts them; and
the gradients of the first kv head's group of query heads are checked against SDPA's math backend in
float64 on the same (bf16-valued) inputs: metrics d{q,k,v}_rel_l2_err. Pin the kernel with
--sdpa-backend flash | cudnn (the issue's figures) or leave it auto.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
import sys

import exec_peer

SCHEMA = "attnbench.results/1"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731 (attnbench's comma lists)
    ap.add_argument("--seq-len", type=ints, default=[16384], help="key length n_k, comma list [16384]")
    ap.add_argument("--q-len", type=int, default=0, help="query rows n_q ≤ n_k, at the end [= seq-len]")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=0, help="GQA key/value heads [= heads]")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--mask", default="none,causal", help="none | causal, comma list [none,causal]")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--sdpa-backend", default="auto", choices=["auto", "flash", "efficient", "cudnn", "math"],
                    help="pin SDPA's kernel (torch.nn.attention.sdpa_kernel) [auto: torch chooses]")
    ap.add_argument("--direction", default="forward", choices=["forward", "backward"],
                    help="time the forward or the backward alone (standalone mode) [forward]")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", type=int, default=0, help="CUDA device ordinal")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out-dir", default="results")
    a = ap.parse_args(argv)
    masks = a.mask.split(",")
    for m in masks:
        if m not in ("none", "causal"):
            ap.error(f"--mask: '{m}' is not none or causal (SDPA has no sliding-window mask of its own)")
    a.mask = masks
    kv = a.kv_heads or a.heads
    if a.heads % kv:
        ap.error(f"--heads {a.heads} must be a multiple of --kv-heads {kv}")
    a.kv_heads = kv
    for n in a.seq_len:
        if n < 1 or (a.q_len and a.q_len > n):
            ap.error(f"--q-len {a.q_len} must be in 1..--seq-len ({n})")
    if a.repeats < 1 or a.warmup < 0:
        ap.error("--repeats must be ≥ 1 and --warmup ≥ 0")
    return a


def load_torch(device):
    """torch and the device, or a clear message and exit 2 (nothing is written)."""
    try:
        import torch
    except ImportError as e:
        refuse(f"PyTorch is not installed ({e}); the peer needs a CUDA build of torch")
    if not torch.cuda.is_available():
        refuse(f"no CUDA device: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no GPU; "
               f"the peer only runs on a GPU")
    if device >= torch.cuda.device_count():
        refuse(f"no CUDA device {device}: this machine has {torch.cuda.device_count()}")
    return torch


def refuse(why):
    print(f"torch_sdpa.py: error: {why}", file=sys.stderr)
    sys.exit(2)


def visible_pairs(n_q, n_k, mask):
    """Query i sits at position n_k − n_q + i and sees keys j ≤ that position under causal."""
    if mask == "none":
        return n_q * n_k
    off = n_k - n_q
    return n_q * (off + 1) + n_q * (n_q - 1) // 2


def run_metadata(torch, device, argv, seed):
    prop = torch.cuda.get_device_properties(device)
    driver = None
    try:  # torch knows the CUDA it was built with, not the driver's; attnbench's own format:
        # "580.159.04 (CUDA 13.0)", the module version and the CUDA level the driver supports
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i",
                              str(device)], capture_output=True, text=True, timeout=30)
        driver = out.stdout.strip() or None
        banner = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", banner)
        if driver and m:
            driver = f"{driver} (CUDA {m.group(1)})"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        nccl = ".".join(str(x) for x in torch.cuda.nccl.version())
    except Exception:  # torch without NCCL
        nccl = None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "run_id": now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3),
        "started_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_sha": sha,
        "command_line": " ".join(["benchmarks/torch_sdpa.py"] + argv),
        "seed": seed,
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu,
        "cores": os.cpu_count() or 0,
        "threads": torch.get_num_threads(),
        "memory_bytes": mem,
        "blas": None,
        # the same wording as impls/cuda/device.cu's device_describe
        "gpu_model": f"{prop.name} (sm_{prop.major}{prop.minor}, {prop.multi_processor_count} SMs, "
                     f"{prop.total_memory / 1073741824.0:.1f} GiB)",
        "gpu_driver": driver,
        "cuda_version": torch.version.cuda,
        "nccl_version": nccl,
        "mpi_version": None,
        "compiler": f"python {platform.python_version()}, torch {torch.__version__}",
        "build_type": None,
    }


def timed(samples, name, unit, metrics, units):
    """attnbench's record_timed: median as `name`, with `name_min` and `name_max`."""
    for key, v in ((name, statistics.median(samples)), (name + "_min", min(samples)), (name + "_max", max(samples))):
        metrics[key] = v
        units[key] = unit


def sdpa_call(torch, q, k, v, mask, scale=None):
    """The timed call on (B, H, n, d) inputs, K/V with H_kv heads, and how GQA was done. GQA through
    enable_gqa (torch 2.5 on), so no copy is timed; an older torch gets K/V expanded first."""
    F = torch.nn.functional
    heads, kv_heads, n_q, n_k = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    kwargs, gqa = {}, "none"
    if scale is not None and abs(scale * q.shape[3] ** 0.5 - 1) > 1e-12:  # SDPA's default is 1/√d
        kwargs["scale"] = scale
    if kv_heads != heads:
        try:
            F.scaled_dot_product_attention(q[:, :, :1], k[:, :, :1], v[:, :, :1], enable_gqa=True)
            kwargs["enable_gqa"], gqa = True, "native"
        except TypeError:
            k = k.repeat_interleave(heads // kv_heads, dim=1)
            v = v.repeat_interleave(heads // kv_heads, dim=1)
            gqa = "expanded"
    attn_mask, is_causal = None, False
    if mask == "causal":
        if n_q == n_k:
            is_causal = True
        else:  # SDPA's is_causal aligns queries to the start; attnbench's sit at the end of the keys.
            # causal_lower_right says so without an n_q × n_k tensor, which would push SDPA off its
            # flash kernel (flash takes no dense mask) and time a slower one.
            from torch.nn.attention.bias import causal_lower_right
            attn_mask = causal_lower_right(n_q, n_k)

    def call():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kwargs)

    return call, gqa


def make_call(torch, req, q, k, v):
    """exec_peer's hook: the request's case, O from SDPA, LSE left to exec_peer."""
    call, _ = sdpa_call(torch, q, k, v, req["mask"], req["scale"])
    return lambda: (call(), None)


def grad_errors(torch, a, q, k, v, d_o, mask, grads):
    """Relative L2 of SDPA's gradients of kv head 0's group against the float64 math backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    group = a.heads // a.kv_heads
    sl = [t[:, :group].detach().double().requires_grad_(True) if i in (0, 3) else
          t[:, :1].detach().double().requires_grad_(True) for i, t in enumerate((q, k, v, d_o))]
    with sdpa_kernel(SDPBackend.MATH):
        call, _ = sdpa_call(torch, sl[0], sl[1], sl[2], mask)
        ref = torch.autograd.grad(call(), sl[:3], sl[3])
    got = (grads[0][:, :group], grads[1][:, :1], grads[2][:, :1])
    return {f"d{n}_rel_l2_err": float((g.double() - r).norm() / r.norm().clamp_min(1e-300))
            for n, g, r in zip("qkv", got, ref)}


def bench_case(torch, a, n_k, mask):
    n_q = a.q_len or n_k
    dt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[a.dtype]
    dev = torch.device("cuda", a.device)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    # (B, H, n, d), the layout attnbench uses; K/V with H_kv heads.
    q = torch.randn(a.batch, a.heads, n_q, a.head_dim, device=dev, dtype=dt, generator=g)
    k = torch.randn(a.batch, a.kv_heads, n_k, a.head_dim, device=dev, dtype=dt, generator=g)
    v = torch.randn(a.batch, a.kv_heads, n_k, a.head_dim, device=dev, dtype=dt, generator=g)
    backward = a.direction == "backward"
    if backward:
        d_o = torch.randn(a.batch, a.heads, n_q, a.head_dim, device=dev, dtype=dt, generator=g)
        q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    call, gqa = sdpa_call(torch, q, k, v, mask)
    ctx = None
    if a.sdpa_backend != "auto":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        ctx = sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                           "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[a.sdpa_backend])
        ctx.__enter__()
    errors = {}
    try:
        if backward:  # the forward outside the events, its graph kept; the backward alone timed
            out = call()
            for _ in range(a.warmup):
                torch.autograd.grad(out, (q, k, v), d_o, retain_graph=True)
            torch.cuda.synchronize(dev)
            secs = []
            for _ in range(a.repeats):
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                grads = torch.autograd.grad(out, (q, k, v), d_o, retain_graph=True)
                stop.record()
                stop.synchronize()
                secs.append(start.elapsed_time(stop) / 1e3)
            del out
            errors = grad_errors(torch, a, q, k, v, d_o, mask, grads)
        else:
            with torch.no_grad():
                for _ in range(a.warmup):
                    call()
                torch.cuda.synchronize(dev)
                secs = []
                for _ in range(a.repeats):
                    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    call()
                    stop.record()
                    stop.synchronize()
                    secs.append(start.elapsed_time(stop) / 1e3)
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)

    flops = 4.0 * a.head_dim * visible_pairs(n_q, n_k, mask) * a.batch * a.heads
    if backward:
        flops *= 2.5  # attnbench's problem_backward_flops: FlashAttention's convention
    metrics, units = {}, {}
    timed(secs, "time_s", "s", metrics, units)
    timed([a.batch * n_q / s for s in secs], "tokens_per_s", "tok/s", metrics, units)
    timed([flops / s / 1e9 for s in secs], "gflops", "GFLOP/s", metrics, units)
    metrics["flops"], units["flops"] = flops, "FLOP"
    for key, val in errors.items():
        metrics[key], units[key] = val, "1"
    config_extra = {"direction": "backward", "flops_rule": "backward = 2.5 x forward FLOPs (FlashAttention "
                    "convention)", "error_heads": "kv head 0's group vs float64 math"} if backward else {}
    return {
        "task": "throughput",
        "backend": "torch_sdpa",
        "local_backend": None,
        "device": f"cuda:{a.device}",
        "transport": "none",
        "ranks": 1,
        "layout": "none",
        "config": {
            "batch": a.batch, "heads": a.heads, "kv_heads": a.kv_heads, "head_dim": a.head_dim,
            "seq_len_q": n_q, "seq_len_k": n_k, "mask": mask, "window": 0, "dtype": a.dtype,
            "block_q": 0, "block_k": 0, "repeats": a.repeats, "warmup": a.warmup,
            "timing": "cuda_events", "sdpa_backend": a.sdpa_backend, "gqa": gqa, **config_extra,
        },
        "metrics": metrics,
        "units": units,
        "per_rank": {},
        "status": "pass",
        "reason": None,
    }


# core/results.c's results_csv_columns: identity, config, the documented extras, then one row per metric.
CSV_COLUMNS = ["run_id", "task", "backend", "local_backend", "device", "transport", "ranks", "layout", "batch",
               "heads", "kv_heads", "head_dim", "seq_len_q", "seq_len_k", "mask", "window", "dtype", "block_q",
               "block_k", "mode", "depth", "needles", "repeats", "warmup", "metric", "value", "unit", "status",
               "reason"]


def csv_text(run, records):
    import io
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in records:
        ident = dict(r["config"], run_id=run["run_id"], **{k: r[k] for k in ("task", "backend", "local_backend",
                                                                            "device", "transport", "ranks",
                                                                            "layout", "status", "reason")})
        cell = lambda k: "" if ident.get(k) is None else ident[k]  # noqa: E731
        rows = [(name, value, r["units"][name]) for name, value in r["metrics"].items()] or [("", "", "")]
        for name, value, unit in rows:
            w.writerow([cell(k) for k in CSV_COLUMNS[:24]] + [name, repr(value) if name else "", unit,
                                                                cell("status"), cell("reason")])
    return out.getvalue()


def write_atomic(path, text):
    """Written under a temporary name, then renamed, as attnbench writes its results."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv):
    if exec_peer.is_protocol(argv):  # run by attnbench as exec:torch_sdpa
        return exec_peer.serve("torch_sdpa.py", argv, make_call, exec_peer.gpu_torch_version)
    a = parse_args(argv)
    torch = load_torch(a.device)
    torch.cuda.set_device(a.device)
    run = run_metadata(torch, a.device, argv, a.seed)
    records = []
    for n_k in a.seq_len:
        for mask in a.mask:
            try:
                r = bench_case(torch, a, n_k, mask)
            except RuntimeError as e:  # out of memory, or no SDPA kernel for the case: recorded like
                torch.cuda.empty_cache()  # attnbench's failed calls, and the run goes on
                r = {"task": "throughput", "backend": "torch_sdpa", "local_backend": None,
                     "device": f"cuda:{a.device}", "transport": "none", "ranks": 1, "layout": "none",
                     "config": {"batch": a.batch, "heads": a.heads, "kv_heads": a.kv_heads,
                                "head_dim": a.head_dim, "seq_len_q": a.q_len or n_k, "seq_len_k": n_k,
                                "mask": mask, "window": 0, "dtype": a.dtype, "block_q": 0, "block_k": 0,
                                "repeats": a.repeats, "warmup": a.warmup},
                     "metrics": {}, "units": {}, "per_rank": {}, "status": "error",
                     "reason": "torch_sdpa: " + ("out of device memory: " if isinstance(e, torch.cuda.OutOfMemoryError)
                                                 else "") + (str(e).splitlines() or [type(e).__name__])[0]}
            records.append(r)
            m = r["metrics"]
            print(f"torch_sdpa n_k={n_k:<8} mask={mask:<6} " +
                  (f"{a.direction} {m['time_s'] * 1e3:10.3f} ms {m['gflops'] / 1e3:8.1f} TFLOP/s" +
                   "".join(f" {x}_rel_l2 {m[f'{x}_rel_l2_err']:.3g}" for x in ("dq", "dk", "dv") if f"{x}_rel_l2_err" in m)
                   if m else r["reason"]))
    os.makedirs(a.out_dir, exist_ok=True)
    base = os.path.join(a.out_dir, run["run_id"])
    write_atomic(base + ".csv", csv_text(run, records))
    write_atomic(base + ".json", json.dumps({"schema": SCHEMA, "run": run, "records": records}, indent=2) + "\n")
    print(f"wrote {base}.json and .csv")
    return 1 if any(r["status"] == "error" for r in records) else 0  # as attnbench run: 1 if a record failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
