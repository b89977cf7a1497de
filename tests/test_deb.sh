#!/usr/bin/env bash
# test_deb.sh (label slow) — `cpack -G DEB` makes the CPU .deb, its Depends are Debian 12 package
# names the package database knows (apt-get install --simulate resolves them), and the package
# works: unpacked into a scratch root (dpkg -x) its attnbench runs `list` and its man page renders;
# as root on a machine where attnbench is not installed, it is also installed for real (dpkg -i),
# `attnbench list` and `man attnbench` run from /usr, and it is purged again (dpkg -P), also on
# failure. A CUDA build dir gets a fresh CPU build in SCRATCH first (the .deb is CUDA off).
# usage: test_deb.sh SOURCE_DIR BUILD_DIR HAVE_CUDA SCRATCH     exit 77: no dpkg-deb/cpack
set -u
src=$1 build=$2 cuda=$3 scratch=$4
rm -rf "$scratch" && mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
command -v dpkg-deb >/dev/null && command -v cpack >/dev/null || { echo "SKIP no dpkg-deb or cpack"; exit 77; }

if [ "$cuda" = ON ] || [ "$cuda" = 1 ] || [ "$cuda" = TRUE ]; then
  echo "     CUDA build: configuring a CPU build in $scratch/build"
  cmake -S "$src" -B "$scratch/build" -DCMAKE_BUILD_TYPE=Release -DATTN_WITH_CUDA=OFF -DBUILD_TESTING=OFF >/dev/null &&
    cmake --build "$scratch/build" -j "$(nproc)" >/dev/null || { bad "CPU build"; exit 1; }
  build=$scratch/build
fi
(cd "$build" && cpack -G DEB -B "$scratch/pkg" >"$scratch/cpack.log" 2>&1) || { bad "cpack -G DEB: $(tail -3 "$scratch/cpack.log")"; exit 1; }
deb=$(ls "$scratch"/pkg/attnbench_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] && ok "cpack -G DEB wrote $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)" || { bad "no .deb"; exit 1; }

deps=$(dpkg-deb -f "$deb" Depends)
echo "     Depends: $deps"
for p in libjansson4 libcsv3 libsentencepiece0 libopenblas0 $(ldd "$build/attnbench" | grep -q libmpi && echo libopenmpi3); do
  printf '%s' "$deps" | grep -q "\b$p\b" && ok "Depends names $p" || bad "Depends lacks $p"
done
if command -v apt-get >/dev/null; then
  out=$(apt-get install --simulate -q "$deb" 2>&1) && ok "apt-get resolves every Depends (--simulate)" ||
    bad "apt-get --simulate: $(printf '%s' "$out" | tail -3)"
fi
files=$(dpkg-deb -c "$deb")
for f in ./usr/bin/attnbench ./usr/share/man/man1/attnbench.1 ./usr/share/pkgconfig/attnbench.pc \
         ./usr/share/attnbench/suites/ci.json ./usr/share/attnbench/datasets/kjv.model; do
  printf '%s' "$files" | grep -q " $f\$" && ok "the package holds $f" || bad "the package lacks $f"
done
if [ -e "$src/include/attnbench/backend.h" ]; then
  printf '%s' "$files" | grep -q " ./usr/include/attnbench/backend.h\$" && ok "the package holds the public header" ||
    bad "the package lacks usr/include/attnbench/backend.h"
fi

root=$scratch/root
dpkg-deb -x "$deb" "$root"
out=$("$root/usr/bin/attnbench" list 2>&1) && printf '%s' "$out" | grep -q "^blockwise " &&
  ok "attnbench list runs from the unpacked package" || bad "unpacked attnbench list: $(printf '%s' "$out" | tail -2)"
grep -q '^includedir=${prefix}/include' "$root/usr/share/pkgconfig/attnbench.pc" && ok "attnbench.pc points at <prefix>/include" ||
  bad "attnbench.pc: $(grep Cflags "$root/usr/share/pkgconfig/attnbench.pc")"

if [ "$(id -u)" -eq 0 ] && ! dpkg -s attnbench >/dev/null 2>&1; then
  trap 'dpkg -P attnbench >/dev/null 2>&1' EXIT
  if dpkg -i "$deb" >"$scratch/dpkg.log" 2>&1; then
    ok "dpkg -i installs it"
    out=$(/usr/bin/attnbench list 2>&1) && printf '%s' "$out" | grep -q "^naive " && ok "/usr/bin/attnbench list runs" ||
      bad "/usr/bin/attnbench list: $(printf '%s' "$out" | tail -2)"
    if command -v man >/dev/null; then
      MANPAGER=cat man attnbench 2>/dev/null | grep -q "attnbench compare" && ok "man attnbench shows the page" ||
        bad "man attnbench"
    fi
  else bad "dpkg -i: $(tail -3 "$scratch/dpkg.log")"; fi
  dpkg -P attnbench >/dev/null 2>&1 && [ ! -e /usr/bin/attnbench ] && ok "dpkg -P removes it again" || bad "purge"
  trap - EXIT
else
  echo "     not root, or attnbench already installed: the real install (dpkg -i) is left out"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
