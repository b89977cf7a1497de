#!/bin/sh
# device_run.sh — every GPU acceptance of the project in one run on one GPU, in at most 8.5 minutes:
# fixed time shares per part (each part is killed at its share), results and logs packed into
# three files under OUT_DIR: summary.log, results.tar.gz, index.html (the dashboard). Runs in the
# checkout on the GPU machine with device-pack/ carried (tools/device_pack.sh made it).
# usage: tools/device_run.sh [--dry-run] OUT_DIR [part ...]
#   parts (default all): tests prefill backward decode model needle approx rest; --dry-run prints the plan only.
# The exec: peers (torch SDPA, flex, flash-attn) run in prefill (throughput) and rest (exactness);
# rest starts with the f16 exactness matrix (issues 18/19; the full one: ctest -L cuda_f16).
set -u
cd "$(dirname "$0")/.."
dry=0
[ "${1:-}" = "--dry-run" ] && { dry=1; shift; }
out=${1:?usage: tools/device_run.sh [--dry-run] OUT_DIR [part ...]}
shift
parts=${*:-tests prefill backward decode model needle approx rest}

# Seconds per part: gpu tests 140 s, prefill vs SDPA 1.5 min, backward vs SDPA's 0.5, decode 0.5,
# model 50 s, needle 1M 1.5 min, the CUDA approximate backends 20 s, the rest 0.5 — 8 minutes in
# all (the script refuses a plan over 480 s).
share() {
  case $1 in
    tests) echo 140 ;; prefill) echo 90 ;; backward) echo 30 ;; decode) echo 30 ;; model) echo 50 ;; needle) echo 90 ;;
    approx) echo 20 ;; rest) echo 30 ;;
    *) echo 0 ;;
  esac
}
total=0
for p in $parts; do
  s=$(share "$p")
  [ "$s" -gt 0 ] || { echo "device_run: unknown part '$p' (tests prefill backward decode model needle approx rest)"; exit 2; }
  total=$((total + s))
done
[ "$total" -le 480 ] || { echo "device_run: the parts' shares add up to $total s, over 480"; exit 2; }

A=build-gpu/attnbench
# The torch peers through attnbench's exec: protocol (docs/exec-protocol.md), beside blockwise_cuda.
specs="--exec-spec benchmarks/peers/torch_sdpa.json --exec-spec benchmarks/peers/torch_flex.json --exec-spec benchmarks/peers/flash_attn.json"
peers=exec:torch_sdpa,exec:torch_flex,exec:flash_attn
res=$out/results logs=$out/logs
# The commands of each part, one per line (the shared flags of the issue's shapes).
cmds() {
  case $1 in
    # the gpu tests run under --kernel auto: the wgmma kernel (flash_sm90.cu) on an H100/H200; four
    # at a time: their float64 references are host work (16 cores there), their kernels small, and
    # cuda_memory counts its own process's allocations, not the device's free memory
    tests) echo "cd build-gpu && ctest -L gpu -j4 --output-on-failure --timeout 120" ;;
    # issue 18's table: blockwise_cuda on the mma and the wgmma kernel beside torch SDPA, bf16, H 16;
    # then d = 256 in bf16 and f16
    prefill)
      for d in 64 128; do
        echo "python3 benchmarks/torch_sdpa.py --seq-len 4096,16384,65536 --heads 16 --head-dim $d --mask none,causal --warmup 1 --repeats 3 --out-dir $res"
        for k in mma wgmma; do
          echo "$A run --task throughput --backends blockwise_cuda --kernel $k --dtype bf16 --heads 16 --kv-heads 16 --head-dim $d --seq-len 4096,16384,65536 --mask none,causal --warmup 1 --repeats 3 --out-dir $res"
        done
      done
      # d = 256 in bf16 and f16 (issue 18), n ≤ 16384 to keep to the share: SDPA, then both kernels
      for t in bf16 f16; do
        echo "python3 benchmarks/torch_sdpa.py --dtype $t --seq-len 4096,16384 --heads 16 --head-dim 256 --mask none,causal --warmup 1 --repeats 3 --out-dir $res"
        for k in mma wgmma; do
          echo "$A run --task throughput --backends blockwise_cuda --kernel $k --dtype $t --heads 16 --kv-heads 16 --head-dim 256 --seq-len 4096,16384 --mask none,causal --warmup 1 --repeats 3 --out-dir $res"
        done
      done ;;
    backward) # issue 21: blockwise_cuda's backward beside SDPA's flash and cuDNN backward (with their gradient errors)
      echo "$A run --task throughput --direction backward --backends blockwise_cuda --dtype bf16 --heads 16 --kv-heads 16 --head-dim 128 --seq-len 16384 --mask none,causal --warmup 1 --repeats 3 --out-dir $res"
      echo "python3 benchmarks/torch_sdpa.py --direction backward --sdpa-backend flash --seq-len 16384 --heads 16 --head-dim 128 --mask none,causal --warmup 1 --repeats 5 --out-dir $res"
      echo "python3 benchmarks/torch_sdpa.py --direction backward --sdpa-backend cudnn --seq-len 16384 --heads 16 --head-dim 128 --mask none,causal --warmup 1 --repeats 5 --out-dir $res" ;;
    decode)
      echo "$A run --task throughput --backends blockwise_cuda --dtype bf16 --heads 8 --kv-heads 1 --head-dim 128 --seq-len 1048576 --q-len 1,16 --mask causal --repeats 10 --out-dir $res"
      echo "python3 benchmarks/torch_sdpa.py --seq-len 1048576 --q-len 1 --heads 8 --kv-heads 1 --head-dim 128 --mask causal --repeats 10 --out-dir $res"
      echo "python3 benchmarks/torch_sdpa.py --seq-len 1048576 --q-len 16 --heads 8 --kv-heads 1 --head-dim 128 --mask causal --repeats 10 --out-dir $res"
      echo "$A peak --out-dir $res" ;;
    model)
      echo "$A run --task model --backends blockwise_cuda,naive_cuda --dtype bf16 --heads 8 --kv-heads 2 --head-dim 64 --layers 2 --seq-len 4096,16384 --mask causal --repeats 2 --warmup 1 --out-dir $res"
      echo "$A run --task model --backends ring_cuda --transport cuda_local --ranks 4 --dtype bf16 --heads 8 --kv-heads 2 --head-dim 64 --layers 2 --seq-len 4096,16384 --mask causal --repeats 2 --warmup 1 --out-dir $res"
      echo "$A run --task model --backends blockwise --dtype f32 --heads 8 --kv-heads 2 --head-dim 64 --layers 2 --seq-len 4096 --mask causal --repeats 1 --warmup 0 --out-dir $res" ;;
    needle)
      echo "$A needle --backends blockwise_cuda --dtype bf16 --seq-len 1048576 --depths 0:100:10 --mode prefill --out-dir $res" ;;
    approx) # sinks_window_cuda and topk_blocks_cuda against blockwise_cuda: error and key fraction, then time
      echo "$A run --task exactness --backends blockwise_cuda,sinks_window_cuda,topk_blocks_cuda --dtype bf16 --heads 8 --kv-heads 2 --head-dim 128 --seq-len 4096 --mask causal --window 512 --sinks 64 --topk 5%,100% --out-dir $res"
      echo "$A run --task throughput --backends blockwise_cuda,sinks_window_cuda,topk_blocks_cuda --dtype bf16 --heads 8 --kv-heads 8 --head-dim 128 --seq-len 65536 --mask causal --window 1024 --sinks 64 --topk 5% --warmup 1 --repeats 3 --out-dir $res" ;;
    rest)
      # f16 (issues 18/19): the exactness matrix of the single-GPU and the cuda_local backends, small
      # shapes (the float64 reference is host work); the full one is ctest -L cuda_f16.
      echo "$A run --task exactness --dtype f16 --backends naive_cuda,blockwise_cuda,sliding_window_cuda --heads 4 --kv-heads 1 --head-dim 128 --seq-len 1000 --q-len 1000,16,1 --mask none,causal,window --window 300 --out-dir $res"
      echo "$A run --task exactness --dtype f16 --backends blockwise_cuda,ring_cuda,zigzag_cuda,ulysses_cuda,usp_cuda --transport cuda_local --ranks 4 --heads 4 --kv-heads 2 --head-dim 64 --seq-len 2049 --q-len 2049,683 --mask none,causal,window --window 614 --out-dir $res"
      echo "$A run --task memory --backends blockwise_cuda --dtype bf16 --heads 8 --kv-heads 8 --head-dim 128 --seq-len 65536,131072 --mask causal --out-dir $res"
      echo "$A needle --backends sliding_window_cuda --dtype bf16 --window 4096 --seq-len 32768 --depths 0:100:25 --mode prefill --out-dir $res"
      echo "$A run --task exactness --dtype bf16 $specs --backends $peers --seq-len 1024,4096 --heads 8 --kv-heads 2 --head-dim 128 --mask none,causal,window --window 512 --out-dir $res"
      echo "$A run --task throughput --backends ring_cuda,zigzag_cuda,ulysses_cuda --transport cuda_local --ranks 4 --dtype bf16 --heads 8 --kv-heads 8 --head-dim 128 --seq-len 262144 --mask causal --repeats 1 --warmup 0 --out-dir $res" ;;
  esac
}

if [ $dry = 1 ]; then
  for p in $parts; do
    echo "part $p: $(share "$p") s"
    cmds "$p" | sed 's/^/  /'
  done
  echo "total: $total s of 480; output: $out/summary.log $out/results.tar.gz $out/index.html"
  exit 0
fi

[ -f device-pack/SOURCE_ROOT ] || { echo "device_run: no device-pack/ (run tools/device_pack.sh, carry device-pack)"; exit 2; }
root=$(cat device-pack/SOURCE_ROOT)
# The pack travels compressed (device_pack.sh); Python's tarfile unpacks it where xz may be absent.
if [ -f device-pack/payload.tar.xz ] && [ ! -x device-pack/attnbench ]; then
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' device-pack/payload.tar.xz device-pack ||
    { echo "device_run: cannot unpack device-pack/payload.tar.xz"; exit 2; }
fi
# The build recorded absolute paths under $root (CTest files, the haystack default): make $root
# this checkout and $root/build-gpu the pack.
if [ "$root" != "$PWD" ]; then
  if [ -e "$root" ] && [ ! -L "$root" ]; then
    echo "device_run: $root exists and is not this checkout; run from $root or rebuild the pack here"
    exit 2
  fi
  mkdir -p "$(dirname "$root")" && ln -sfn "$PWD" "$root" || { echo "device_run: cannot link $root"; exit 2; }
fi
# On the machine that built it, build-gpu/ is the build itself.
[ -d build-gpu ] && [ ! -L build-gpu ] || ln -sfn "$PWD/device-pack" build-gpu
# libnccl and libcublas are not packed: PyTorch's nvidia-* packages and the CUDA toolkit have them.
nv=$(python3 -c 'import os, nvidia.nccl, nvidia.cublas
print(":".join(os.path.join(list(m.__path__)[0], "lib") for m in (nvidia.nccl, nvidia.cublas)))' 2>/dev/null || true)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && nv="${nv:+$nv:}$d"; done
export LD_LIBRARY_PATH="$PWD/device-pack/lib${nv:+:$nv}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd device-pack/attnbench | grep -q "not found"; then
  echo "device_run: attnbench is missing libraries:"; ldd device-pack/attnbench | grep "not found"; exit 2
fi
case $out in /*) ;; *) out=$PWD/$out res=$PWD/$res logs=$PWD/$logs ;; esac
mkdir -p "$res" "$logs"
summary=$out/summary.log
: >"$summary"
nvidia-smi >"$logs/nvidia-smi.txt" 2>&1 || true
first=0
for p in $parts; do
  budget=$(share "$p") start=$(date +%s) i=0
  echo "== $p (share ${budget} s)" | tee -a "$summary"
  # The part's commands share its budget: each gets what is left, and the part ends at its share.
  cmds "$p" >"$logs/$p.cmds"
  while IFS= read -r c; do
    i=$((i + 1))
    left=$((budget - ($(date +%s) - start)))
    if [ "$left" -le 0 ]; then
      echo "   [$i] not run: the part's share is spent: $c" | tee -a "$summary"
      [ $first = 0 ] && first=124
      continue
    fi
    timeout -k 5 "$left" sh -c "$c" >"$logs/$p.$i.log" 2>&1 </dev/null
    rc=$?
    echo "   [$i] exit $rc after $(($(date +%s) - start)) s: $c" | tee -a "$summary"
    tail -15 "$logs/$p.$i.log" | sed 's/^/      /' >>"$summary"
    [ $first = 0 ] && [ $rc != 0 ] && first=$rc
  done <"$logs/$p.cmds"
done
# Decode: K/V bytes read per second from each record's time_s (2 · n_k · H_kv · d · 2 bytes, bf16).
python3 - "$res" >>"$summary" 2>&1 <<'EOF' || true
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.json")):
    try:
        run = json.load(open(f))
    except Exception:
        continue
    for r in run.get("records", []):
        c, m = r.get("config") or {}, r.get("metrics") or {}
        if r.get("task") == "throughput" and c.get("seq_len_q", 0) <= 64 and m.get("time_s"):
            kv = 2 * c["seq_len_k"] * c["kv_heads"] * c["head_dim"] * 2 * c.get("batch", 1)
            print("decode %-14s n_q=%-3d n_k=%d split=%s time %.4g ms, K/V read %.0f GB/s" % (
                r["backend"], c["seq_len_q"], c["seq_len_k"], c.get("split", "-"), 1e3 * m["time_s"], kv / m["time_s"] / 1e9))
EOF
ls "$res"/*.json >/dev/null 2>&1 && "$A" report "$res"/*.json --out "$out/index.html" >>"$summary" 2>&1
echo "first non-zero exit: $first" >>"$summary"
tar -czf "$out/results.tar.gz" -C "$out" results logs && rm -rf "$res" "$logs"
ls "$out"
exit $first
