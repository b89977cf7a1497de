#!/usr/bin/env bash
# test_cli_errors.sh — bad input through the real executable: each case must print one error
# line naming the problem, exit with the stated code (2 usage, 1 runtime), never crash, and
# leave no results file behind. usage: test_cli_errors.sh ATTNBENCH SCRATCH PYTHON3
set -u
bin=$1 scratch=$2 py=$3
rm -rf "$scratch" && mkdir -p "$scratch"
out="$scratch/results"
pass=0 fail=0

# expect CODE PATTERN -- ARGS...: runs attnbench ARGS with --out-dir for run/peak.
expect() {
  local code=$1 pattern=$2; shift 3
  local err rc
  err=$("$bin" "$@" 2>&1 >/dev/null); rc=$?
  local lines; lines=$(printf '%s\n' "$err" | grep -c 'error:')
  if [ "$rc" -eq "$code" ] && printf '%s' "$err" | grep -q -- "$pattern" && [ "$lines" -eq 1 ] \
     && [ -z "$(ls -A "$out" 2>/dev/null)" ]; then
    pass=$((pass + 1)); echo "ok   $*"
  else
    fail=$((fail + 1)); echo "FAIL $*"
    echo "     expected exit $code and one error line matching '$pattern' and no results; got exit $rc:"
    printf '%s\n' "$err" | sed 's/^/     | /' | tail -5
    ls -A "$out" 2>/dev/null | sed 's/^/     left behind: /'
  fi
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # the mpi case runs a singleton
R=(run --out-dir "$out" --seq-len 16 --heads 2 --kv-heads 1 --head-dim 8)
expect 2 "unknown command"           -- frobnicate
expect 2 "unknown flag '--bogus'"    -- "${R[@]}" --bogus 1
expect 2 "needs a value"             -- "${R[@]}" --heads
expect 2 "unknown backend 'flash9'"  -- "${R[@]}" --backends naive,flash9
expect 2 "multiple of kv-heads"      -- run --out-dir "$out" --heads 8 --kv-heads 3
expect 2 "head-dim: 0 is out of range" -- "${R[@]}" --head-dim 0
expect 2 "q-len must be in 1..seq-len" -- "${R[@]}" --q-len 17
expect 2 "window: 0 is out of range" -- "${R[@]}" --mask window --window 0
expect 2 "unknown mask 'diagonal'"   -- "${R[@]}" --mask diagonal
expect 2 "unknown task 'speed'"      -- "${R[@]}" --task speed
expect 2 "not an integer"            -- "${R[@]}" --seq-len 12abc
# issue 17: an empty list item is a slip, not a shorter list; 20 digits are out of range, not "not an integer"
expect 2 "seq-len: '64,,128' has an empty item" -- "${R[@]}" --seq-len 64,,128
expect 2 "seq-len: '64,' has an empty item" -- "${R[@]}" --seq-len 64,
expect 2 "backends: ',naive' has an empty item" -- "${R[@]}" --backends ,naive
expect 2 "depths: '10,,20' has an empty item" -- needle --out-dir "$out" --depths 10,,20
expect 2 "seq-len: 99999999999999999999 is out of range" -- "${R[@]}" --seq-len 99999999999999999999
expect 2 "heads: -99999999999999999999 is out of range" -- "${R[@]}" --heads -99999999999999999999
expect 2 "unexpected argument"       -- "${R[@]}" stray
expect 2 "not a transport"           -- "${R[@]}" --transport carrier-pigeon
expect 2 "ranks: 65 is out of range" -- "${R[@]}" --ranks 65
expect 2 "not a layout"              -- "${R[@]}" --layout spiral
expect 2 "not a single-rank backend" -- "${R[@]}" --local-backend ring
expect 2 "not exit:RANK:STEP"        -- "${R[@]}" --inject-fault crash:1:1
expect 2 "comm-timeout"              -- "${R[@]}" --comm-timeout -1
expect 2 "at least 2 ranks"          -- comm --ranks 1 --out-dir "$out"
# A GPU transport is refused by comm (host transports only); without CUDA, already by the flag.
expect 2 "transport cuda_local"      -- comm --transport cuda_local --out-dir "$out"
expect 2 "but mpirun started 1"      -- "${R[@]}" --transport mpi --ranks 3 --backends ring
# Only exact flag names (getopt took unambiguous abbreviations); each subcommand its own flags.
expect 2 "unknown flag '--se'"       -- "${R[@]}" --se 7
expect 2 "unknown flag '--ba'"       -- "${R[@]}" --ba blockwise
expect 2 "unknown flag '--w'"        -- "${R[@]}" --mask window --w 5
expect 2 "head-dim: 0 is out of range" -- "${R[@]}" --head-dim=0
expect 2 "'--q' does not apply to run (it is taken by attend)" -- "${R[@]}" --q q.npy
expect 2 "'--threshold' does not apply to run (it is taken by report, compare)" -- "${R[@]}" --threshold 5%
expect 2 "'--seq-len' does not apply to peak (it is taken by run, needle, simulate)" -- peak --seq-len 64 --out-dir "$out"
expect 2 "'--heads' does not apply to comm" -- comm --heads 2 --out-dir "$out"
expect 2 "'--sizes' does not apply to compare (it is taken by peak, comm)" -- compare a.json b.json --sizes 8
# --name=value reaches the field: a run with every value given that way records them.
eq="$scratch/eq"
if "$bin" run --out-dir="$eq" --seq-len=24 --heads=2 --kv-heads=1 --head-dim=8 --mask=none --repeats=1 >/dev/null 2>&1 &&
   "$py" -c 'import json,sys,glob; r=json.load(open(glob.glob(sys.argv[1]+"/*.json")[0]))["records"][0]["config"]
sys.exit(0 if (r["seq_len_k"], r["heads"], r["kv_heads"], r["head_dim"], r["mask"]) == (24, 2, 1, 8, "none") else 1)' "$eq"
then pass=$((pass + 1)); echo "ok   --name=value sets seq-len, heads, kv-heads, head-dim, mask, out-dir"
else fail=$((fail + 1)); echo "FAIL --name=value: the run failed or its record has other values"; fi
# --help lists the subcommand's own flags only.
help_has() { # help_has SUBCOMMAND "FLAGS IT LISTS" "FLAGS IT DOES NOT"
  local text; text=$("$bin" "$1" --help) || { fail=$((fail + 1)); echo "FAIL $1 --help exits non-zero"; return; }
  local f bad=""
  for f in $2; do printf '%s\n' "$text" | grep -q -- "^  $f " || bad="$bad missing:$f"; done
  for f in $3; do printf '%s\n' "$text" | grep -q -- "^  $f " && bad="$bad listed:$f"; done
  if [ -z "$bad" ]; then pass=$((pass + 1)); echo "ok   $1 --help lists $2, not $3"
  else fail=$((fail + 1)); echo "FAIL $1 --help:$bad"; fi
}
help_has run "--task --seq-len --merge-dtype --config --out-dir" "--threshold --q --stream-mib --inject-fault"
help_has compare "--threshold" "--seq-len --out-dir --backends"
help_has attend "--backend --q --out --merge-dtype" "--threshold --seq-len --ranks"
help_has peak "--sizes --stream-mib --repeats" "--seq-len --threshold"
help_has comm "--sizes --ranks --transport" "--seq-len --stream-mib"
help_has needle "--depths --seq-len --window" "--task --heads --threshold"

printf '{"task": "exactness", "seq-len": [16, 32' > "$scratch/truncated.json"
printf '{"task": "exactness", "sequence": 16}' > "$scratch/unknown_key.json"
printf '{"runs": [{"task": "exactness"}, {"heads": {"x": 1}}]}' > "$scratch/bad_type.json"
printf '{"runs": [{"seq-len": 16}, {"heads": 6, "kv-heads": 4}]}' > "$scratch/bad_shape.json"
printf '[1, 2]' > "$scratch/array.json"
expect 2 "truncated.json"             -- run --out-dir "$out" --config "$scratch/truncated.json"
expect 2 "unknown option 'sequence'"  -- run --out-dir "$out" --config "$scratch/unknown_key.json"
expect 2 "must be a string, a number" -- run --out-dir "$out" --config "$scratch/bad_type.json"
expect 2 "multiple of kv-heads"       -- run --out-dir "$out" --config "$scratch/bad_shape.json"
expect 2 "top level must be a JSON object" -- run --out-dir "$out" --config "$scratch/array.json"
# A key in the wrong place is refused; an error in the second run names the file and runs[1].
printf '{"runs": [{"seq-len": 16}, {"seq-len": 32, "out-dir": "%s/elsewhere"}]}' "$scratch" > "$scratch/run_out_dir.json"
printf '{"runs": [{"seq-len": 16, "runs": [{"heads": 2}]}]}' > "$scratch/nested_runs.json"
expect 2 "run_out_dir.json: runs\[1\]: out-dir applies to the whole suite; put it at the top level" \
  -- run --out-dir "$out" --config "$scratch/run_out_dir.json"
expect 2 "nested_runs.json: runs\[0\]: 'runs' cannot be nested in a run" \
  -- run --out-dir "$out" --config "$scratch/nested_runs.json"
expect 2 "bad_shape.json: runs\[1\]: heads (6) must be a multiple of kv-heads (4)" \
  -- run --out-dir "$out" --config "$scratch/bad_shape.json"
expect 2 "bad_type.json: runs\[1\]" -- run --out-dir "$out" --config "$scratch/bad_type.json"
expect 2 "No such file"               -- run --out-dir "$out" --config "$scratch/missing.json"

# attend on malformed .npy files (made with NumPy, then damaged).
"$py" - "$scratch" <<'PY'
import numpy as np, sys, os
d = sys.argv[1]
rng = np.random.default_rng(0)
q = rng.standard_normal((1, 2, 8, 4), dtype=np.float32)
np.save(f"{d}/q.npy", q); np.save(f"{d}/k.npy", q[:, :1]); np.save(f"{d}/v.npy", q[:, :1])
raw = open(f"{d}/q.npy", "rb").read()
open(f"{d}/magic.npy", "wb").write(b"\x93NUMPX" + raw[6:])
open(f"{d}/trunc.npy", "wb").write(raw[:-10])
np.save(f"{d}/int.npy", q.astype(np.int32))
np.save(f"{d}/fortran.npy", np.asfortranarray(q))
hl = int.from_bytes(raw[8:10], "little")
open(f"{d}/lying.npy", "wb").write(raw[:8] + (hl + 5000).to_bytes(2, "little") + raw[10:])
np.save(f"{d}/three_d.npy", q[0])
# MQA problem whose naive score matrix cannot fit: n = 2^20 keys, d = 1 (4 MiB per tensor).
big = np.zeros((1, 1, 1 << 20, 1), np.float32)
np.save(f"{d}/big.npy", big)
PY
A=(attend --backend naive --k "$scratch/k.npy" --v "$scratch/v.npy" --out "$scratch/o.npy")
expect 2 "magic"        -- "${A[@]}" --q "$scratch/magic.npy"
expect 2 "truncated"    -- "${A[@]}" --q "$scratch/trunc.npy"
expect 2 "dtype"        -- "${A[@]}" --q "$scratch/int.npy"
expect 2 "Fortran"      -- "${A[@]}" --q "$scratch/fortran.npy"
expect 2 "header"       -- "${A[@]}" --q "$scratch/lying.npy"
expect 2 "must be 4-D"  -- "${A[@]}" --q "$scratch/three_d.npy"
expect 2 "No such file" -- "${A[@]}" --q "$scratch/absent.npy"
expect 2 "needs --q"    -- attend --backend naive --k "$scratch/k.npy"
expect 2 "multiple of kv-heads" -- attend --backend naive --q "$scratch/k.npy" --k "$scratch/q.npy" \
                                   --v "$scratch/q.npy" --out "$scratch/o.npy"
expect 1 "would need [0-9]* bytes" -- attend --backend naive --q "$scratch/big.npy" --k "$scratch/big.npy" \
                                   --v "$scratch/big.npy" --out "$scratch/o.npy"
expect 1 "declines mask none" -- attend --backend sliding_window --q "$scratch/q.npy" --k "$scratch/k.npy" \
                                   --v "$scratch/v.npy" --out "$scratch/o.npy"
[ ! -e "$scratch/o.npy" ] && { pass=$((pass + 1)); echo "ok   no output .npy after failed attends"; } \
  || { fail=$((fail + 1)); echo "FAIL a failed attend left $scratch/o.npy"; }

# A results directory that cannot be created: a runtime error, and no file anywhere.
touch "$scratch/file"
expect 1 "file/results" -- run --out-dir "$scratch/file/results" --seq-len 16 --heads 2 --head-dim 8 --kv-heads 2

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
