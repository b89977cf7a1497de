#!/usr/bin/env bash
# screenshots.sh — the README's dashboard screenshots (docs/dashboard-*.png): the two-machine
# fixture (tests/fixtures/hw-cpu.json, a real CPU run, and hw-gpu.json, SYNTHETIC from issue 18's
# H200 table) with the nightly fixtures' gate history, one PNG per view, in headless Chromium.
# usage: dashboards/screenshots.sh [ATTNBENCH]   (default build/attnbench)
set -eu
bin=${1:-build/attnbench}
fx=tests/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" report "$fx/hw-cpu.json" "$fx/hw-gpu.json" --history "$fx/nightly" --out "$tmp/hw.html"
for v in overview cross roofline peers history; do
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$tmp/profile-$v" \
    --virtual-time-budget=10000 --window-size=1200,${HEIGHT:-1100} --screenshot="$tmp/$v.png" "file://$tmp/hw.html#view=$v" 2>/dev/null
  # a 64-colour PNG where pngquant is at hand (Debian package pngquant): a third of the size, legible
  pngquant --force --strip 64 --output "docs/dashboard-$v.png" "$tmp/$v.png" 2>/dev/null || cp "$tmp/$v.png" "docs/dashboard-$v.png"
  echo "docs/dashboard-$v.png $(du -k "docs/dashboard-$v.png" | cut -f1) KiB"
done
