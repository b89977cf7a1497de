#!/usr/bin/env bash
# test_install.sh — `cmake --install` into a scratch prefix lays out what cmake/package.cmake
# promises (binary, man page, pkg-config file, suites, datasets, and the public header when the
# tree has one), the installed attnbench runs, and pkg-config reads the .pc file.
# usage: test_install.sh SOURCE_DIR BUILD_DIR SCRATCH
set -u
src=$1 build=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
p=$scratch/prefix
cmake --install "$build" --prefix "$p" >"$scratch/install.log" 2>&1 && ok "cmake --install --prefix $p" ||
  { bad "cmake --install: $(tail -3 "$scratch/install.log")"; exit 1; }
want="bin/attnbench share/man/man1/attnbench.1 share/pkgconfig/attnbench.pc share/attnbench/suites/ci.json
      share/attnbench/suites/nightly.json share/attnbench/datasets/kjv.txt share/attnbench/datasets/kjv.model"
[ -e "$src/include/attnbench/backend.h" ] && want="$want include/attnbench/backend.h"
for f in $want; do [ -s "$p/$f" ] && ok "installed $f" || bad "missing $f"; done
"$p/bin/attnbench" list | grep -q "^blockwise " && ok "the installed attnbench list runs" || bad "installed attnbench list"
if command -v pkg-config >/dev/null; then
  # attnbench.pc is relative to its own place: the paths it gives must resolve into the prefix.
  got=$(PKG_CONFIG_PATH=$p/share/pkgconfig pkg-config --variable=suitesdir attnbench 2>&1)
  [ "$(realpath -m "$got")" = "$(realpath -m "$p/share/attnbench/suites")" ] && ok "pkg-config suitesdir: $got" ||
    bad "pkg-config suitesdir: $got"
  cf=$(PKG_CONFIG_PATH=$p/share/pkgconfig pkg-config --cflags attnbench 2>&1 | xargs)
  [ "$(realpath -m "${cf#-I}")" = "$(realpath -m "$p/include")" ] && ok "pkg-config --cflags: $cf" ||
    bad "pkg-config --cflags: $cf (want $p/include)"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
