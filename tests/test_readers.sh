#!/usr/bin/env bash
# test_readers.sh — everything that reads a results file back (needle --resume, report, compare)
# refuses what it cannot rely on: one error line naming the file (and the record), exit 2, and
# the file on disk left as it was. One CASE per defect of issue 17 (see tests/CMakeLists.txt).
# usage: test_readers.sh ATTNBENCH SCRATCH FIXTURES PYTHON3 CASE
set -u
bin=$1 scratch=$2 fx=$3 py=$4 case=$5
rm -rf "$scratch" && mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# refused NAME PATTERN FILE -- ARGS...: attnbench ARGS exits 2 with one error line matching
# PATTERN, and FILE (the one being read, "" for none) is byte for byte what it was.
refused() {
  local name=$1 pattern=$2 file=$3; shift 4
  [ -n "$file" ] && cp "$file" "$scratch/before"
  local err rc
  err=$("$bin" "$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 2 ] && [ "$(printf '%s\n' "$err" | grep -c 'error:')" -eq 1 ] && printf '%s' "$err" | grep -q -- "$pattern" &&
     { [ -z "$file" ] || cmp -s "$file" "$scratch/before"; }; then
    ok "$name: $err"
  else
    bad "$name: want exit 2, one error matching '$pattern', file unchanged; got exit $rc: $err"
    [ -n "$file" ] && ! cmp -s "$file" "$scratch/before" && echo "     the file changed"
  fi
}

# edit IN OUT PYTHON: OUT is IN's JSON as `d` after the statements run.
edit() { "$py" -c "import json, sys; d = json.load(open(sys.argv[1])); $3; json.dump(d, open(sys.argv[2], 'w'))" "$1" "$2"; }

# A small needle run to resume (512 tokens, two backends, two depths: well under a second).
N=(needle --backends blockwise,sliding_window --window 300 --seq-len 512 --threads 2)
needle_file() {
  "$bin" "${N[@]}" --depths 0,50 --out-dir "$scratch/needle" >/dev/null 2>&1 || { bad "needle run exit $?"; return 1; }
  ls "$scratch"/needle/*.json | head -1
}

# put IN PYTHON: writes IN edited by PYTHON to D/<its run_id>.json (the file --resume rewrites) and
# prints that path.
put() {
  local tmp="$scratch/edit.json"
  edit "$1" "$tmp" "$2" || return 1
  local id; id=$("$py" -c "import json, sys; print(json.load(open(sys.argv[1]))['run']['run_id'])" "$tmp")
  mkdir -p "$scratch/D" && cp "$tmp" "$scratch/D/$id.json" && echo "$scratch/D/$id.json"
}

case $case in
resume_refuses_foreign) # issue 17 item 3: a file that is not a needle run of these settings
  f=$(put "$fx/machine-a.json" "pass") || exit 1 # an exactness ... needle results file, as is
  refused "exactness file" "not a needle run: record 0 has task \"exactness\"" "$f" -- \
    "${N[@]}" --depths 0 --resume "$f" --out-dir "$scratch/D"
  g=$(needle_file) || exit 1
  refused "other --needles" "measured with needles 1, this run 2" "$g" -- \
    "${N[@]}" --depths 0 --needles 2 --resume "$g" --out-dir "$scratch/needle"
  refused "other --window" "measured with window 300, this run 200" "$g" -- \
    "${N[@]}" --depths 0 --window 200 --resume "$g" --out-dir "$scratch/needle"
  refused "other --seed" "measured with --seed 1234, this run 7" "$g" -- \
    "${N[@]}" --depths 0 --seed 7 --resume "$g" --out-dir "$scratch/needle"
  f=$(put "$g" "d['records'] = []") || exit 1
  refused "no records" "not a needle run: it has no records" "$f" -- "${N[@]}" --resume "$f" --out-dir "$scratch/D"
  # and the same file with the same settings still resumes, growing by the new depth only
  out=$("$bin" "${N[@]}" --depths 0,25,50 --resume "$g" --out-dir "$scratch/needle" 2>&1); rc=$?
  n=$("$py" -c "import json, sys; print(len(json.load(open(sys.argv[1]))['records']))" "$g")
  [ $rc -eq 0 ] && [ "$n" -eq 6 ] && [ "$(printf '%s\n' "$out" | grep -c 'kept from')" -eq 4 ] &&
    ok "same settings: 4 records kept, 2 measured" || bad "same settings resume: exit $rc, $n records"
  ;;
resume_run_id_confined) # item 4: the run id names the output file, so it must have the generated shape
  g=$(needle_file) || exit 1
  mkdir -p "$scratch/deep/er/D"
  edit "$g" "$scratch/deep/er/D/evil.json" "d['run']['run_id'] = '/../../x'"
  refused "resume of run_id /../../x" 'run_id "/../../x" is not a run id' "$scratch/deep/er/D/evil.json" -- \
    "${N[@]}" --depths 0 --resume "$scratch/deep/er/D/evil.json" --out-dir "$scratch/deep/er/D"
  found=$(find "$scratch" -name 'x.json' -o -name '.x.json.tmp')
  [ -z "$found" ] && ok "nothing written outside --out-dir" || bad "written outside --out-dir: $found"
  refused "report of run_id /../../x" "evil.json: .*run_id" "" -- report "$scratch/deep/er/D/evil.json" \
    --out "$scratch/r.html"
  refused "compare of run_id /../../x" "evil.json: .*run_id" "" -- compare "$g" "$scratch/deep/er/D/evil.json"
  edit "$g" "$scratch/upper.json" "d['run']['run_id'] = d['run']['run_id'][:-6] + 'ABCDEF'"
  refused "report of an upper-case run id" "upper.json: .*run_id" "" -- report "$scratch/upper.json" --out "$scratch/r.html"
  ;;
resume_validates_records) # item 11: records must be what a fresh run writes
  g=$(needle_file) || exit 1
  for edit_ in "bogus status|d['records'][0]['status'] = 'bogus'|status \"bogus\" is not one of" \
               "depth fifty|d['records'][0]['config']['depth'] = 'fifty'|has no depth" \
               "depth 250|d['records'][0]['config']['depth'] = 250|has no depth" \
               "heads -7|d['records'][0]['config']['heads'] = -7|measured with heads -7, this run 2" \
               "5000 duplicates|d['records'] += [d['records'][0]] * 5000|record 4 (needle blockwise) repeats the case of record 0" \
               "recall 7|d['records'][0]['metrics']['recall'] = 7|pass without a recall in 0" \
               "metric a string|d['records'][0]['metrics']['time'] = 'slow'|metric \"time\" is not a number" \
               "ranks 0|d['records'][0]['ranks'] = 0|\"ranks\" is not an integer"; do
    IFS='|' read -r name code pattern <<<"$edit_"
    f=$(put "$g" "$code") || exit 1
    refused "$name" "$pattern" "$f" -- "${N[@]}" --depths 0,50 --resume "$f" --out-dir "$scratch/D"
  done
  ;;
compare_fails_unreadable) # item 12: the gate fails on what it cannot read, naming file and record
  edit "$fx/equal.json" "$scratch/empty.json" "d['records'] = []"
  refused "NEW with no records" "empty.json: no records" "" -- compare "$fx/machine-a.json" "$scratch/empty.json"
  refused "BASE with no records" "empty.json: no records" "" -- compare "$scratch/empty.json" "$fx/machine-a.json"
  edit "$fx/equal.json" "$scratch/strmetric.json" "d['records'][3]['metrics']['time_s'] = 'fast'"
  refused "a string-valued metric" 'strmetric.json: .*record 3 (exactness naive) metric "time_s" is not a number' "" -- \
    compare "$fx/machine-a.json" "$scratch/strmetric.json"
  edit "$fx/equal.json" "$scratch/status.json" "d['records'][0]['status'] = 'bogus'"
  refused "an unknown status" 'status.json: .*record 0 (exactness naive) status "bogus"' "" -- \
    compare "$fx/machine-a.json" "$scratch/status.json"
  refused "an unknown status in report" 'status.json: .*record 0' "" -- report "$scratch/status.json" --out "$scratch/r.html"
  # a metric one side lacks is listed, not dropped
  edit "$fx/equal.json" "$scratch/less.json" "del d['records'][0]['metrics']['time_s']"
  out=$("$bin" compare "$fx/machine-a.json" "$scratch/less.json" 2>&1)
  printf '%s\n' "$out" | grep -q "exactness naive n=256 none .* time_s .* only in BASE" &&
    ok "a metric only in BASE is listed" || bad "a metric only in BASE is not listed"
  ;;
schema_versions) # the schema version: this version's files read, newer or malformed ones do not
  out=$("$bin" compare "$fx/machine-a.json" "$fx/equal.json" 2>&1) && ok "a file of the current version reads" ||
    bad "current version refused: $out"
  edit "$fx/equal.json" "$scratch/newer.json" "d['schema'] = 'attnbench.results/999'"
  refused "a newer version" 'newer.json: .*schema "attnbench.results/999" is newer than this attnbench reads' "" -- \
    report "$scratch/newer.json" --out "$scratch/r.html"
  for v in 0 01 1x -1 ""; do
    edit "$fx/equal.json" "$scratch/v.json" "d['schema'] = 'attnbench.results/$v'"
    refused "schema attnbench.results/$v" 'v.json: .*schema is not' "" -- compare "$fx/machine-a.json" "$scratch/v.json"
  done
  ;;
set_interrupted) # a set whose write stopped between renames (its .partial markers, core/outfile.h;
  # the stop itself is made by tests/test_outfile_set.c): report, compare and the history refuse the
  # file by name; needle --resume goes on from the JSON (whole as renamed) and rewrites the set
  g=$(needle_file) || exit 1
  c=${g%.json}.csv
  touch "$g.partial" "$c.partial"
  refused "report of a marked file" "$(basename "$g"): its write stopped between its files' renames" "$g" -- \
    report "$g" --out "$scratch/r.html"
  [ ! -e "$scratch/r.html" ] && ok "report wrote nothing" || bad "report wrote $scratch/r.html"
  refused "compare with a marked file" "$(basename "$g"): its write stopped" "$g" -- compare "$fx/machine-a.json" "$g"
  mkdir -p "$scratch/H" && cp "$fx/machine-a.json" "$scratch/H/a.json" && cp "$g" "$scratch/H/b.json" &&
    touch "$scratch/H/b.json.partial"
  refused "history with a marked file" "b.json: its write stopped" "" -- report --history "$scratch/H" --out "$scratch/r.html"
  out=$("$bin" "${N[@]}" --depths 0,25,50 --resume "$g" --out-dir "$scratch/needle" 2>&1); rc=$?
  n=$("$py" -c "import json, sys; print(len(json.load(open(sys.argv[1]))['records']))" "$g")
  rows=$(($(wc -l <"$c") - 1))
  [ $rc -eq 0 ] && [ "$n" -eq 6 ] && [ "$rows" -ge 6 ] && printf '%s' "$out" | grep -q "note: --resume .*stopped between renames" &&
    [ ! -e "$g.partial" ] && [ ! -e "$c.partial" ] &&
    ok "--resume of a marked file: noted, 6 records, the set rewritten and unmarked" ||
    bad "--resume of a marked file: exit $rc, $n records, $rows CSV rows, markers: $(ls "$scratch"/needle/*.partial 2>/dev/null)"
  out=$("$bin" report "$g" --out "$scratch/r.html" 2>&1) && ok "report reads the repaired set" || bad "report after resume: $out"
  ;;
*) echo "unknown case $case"; exit 2 ;;
esac
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
