#!/usr/bin/env bash
# test_man.sh — the man page attnbench.1 is generated (byte for byte `attnbench --man`, the same
# flag table and usage texts as --help), is well-formed roff (groff -ww: no warning), and the
# section of every command lists every flag that command's --help lists; a page with one flag
# taken out must fail that check. usage: test_man.sh ATTNBENCH MANPAGE SCRATCH
set -u
bin=$1 page=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

[ -s "$page" ] && ok "$page exists" || bad "$page missing or empty"
"$bin" --man > "$scratch/now.1" && cmp -s "$page" "$scratch/now.1" && ok "the installed page is attnbench --man's output" ||
  bad "$page differs from attnbench --man"
if command -v groff >/dev/null; then
  warn=$(groff -k -man -Tutf8 -ww -z "$page" 2>&1)
  [ -z "$warn" ] && ok "groff -ww: no warning" || bad "groff warnings: $(printf '%s' "$warn" | head -3)"
  groff -k -man -Tutf8 "$page" 2>/dev/null | grep -q "attnbench report" && ok "renders (groff -man)" || bad "does not render"
fi

cmds=$("$bin" --help | sed -n 's/^  \([a-z]*\) .*/\1/p')
# check PAGE: 0 when every command's section has every flag of its --help
check() {
  local p=$1 missing=0 n=0
  for c in $cmds; do
    sect=$(awk -v h=".SS \"attnbench $c\"" '$0 == h {on = 1; next} /^\.S[SH] / {on = 0} on' "$p")
    [ -n "$sect" ] || { echo "     no section for $c"; missing=$((missing + 1)); continue; }
    for f in $("$bin" "$c" --help | sed -n 's/^  \(--[a-z0-9-]*\).*/\1/p'); do
      n=$((n + 1))
      esc=$(printf '%s' "$f" | sed 's/-/\\\\-/g')
      printf '%s\n' "$sect" | grep -q "^\\\\fB$esc\\\\fR" || { echo "     $c: $f missing"; missing=$((missing + 1)); }
    done
  done
  echo "     $n flag(s) of ${cmds//$'\n'/ } checked, $missing missing"
  return $((missing > 0))
}
check "$page" && ok "every flag of every command's --help is in its section" || bad "flags missing from the man page"
# The check can fail: the same page without report's --out.
awk '/^\.SS "attnbench report"/ {r = 1} /^\.SS "attnbench compare"/ {r = 0}
     r && /^\\fB\\-\\-out\\fR/ {skip = 1; next} {if (!skip) print; skip = 0}' "$page" > "$scratch/cut.1"
check "$scratch/cut.1" >/dev/null && bad "a page without report's --out passed" || ok "a page without report's --out is caught"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
