#!/usr/bin/env bash
# Compile-checks sources without generating code: each translation unit of a configured build dir whose
# path matches a pattern is run through its own compile command (same compiler, flags, defines,
# -Werror) with -fsyntax-only instead of -c/-o. Templates the sources use are still instantiated, so a
# benchmark that no longer compiles against the headers fails here, at a fraction of an -O3 build.
#   scripts/check-syntax.sh BUILD_DIR [REGEX]   REGEX on the source path, default '/bench/'
# The build dir must have been configured with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON (the bench preset is).
# CI runs it on the bench preset: the release preset does not build the benchmarks.
set -euo pipefail
build=${1:?usage: scripts/check-syntax.sh BUILD_DIR [REGEX]}
pattern=${2:-/bench/}
db="$build/compile_commands.json"
if [ ! -f "$db" ]; then
  echo "check-syntax.sh: no $db; configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON" >&2
  exit 2
fi
jobs=${JOBS:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One NUL-separated argument list per matching source, as files cmd.N.
python3 - "$db" "$pattern" "$work" <<'EOF'
import json, re, shlex, sys
db, pattern, work = sys.argv[1:]
n = 0
for e in json.load(open(db)):
    if not re.search(pattern, e["file"]):
        continue
    args = e["arguments"] if "arguments" in e else shlex.split(e["command"])
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-c", "-MF", "-MT"):
            skip = True
            continue
        if a in ("-MD", "-MMD"):
            continue
        keep.append(a)
    keep += ["-fsyntax-only", e["file"]]
    with open(f"{work}/cmd.{n}", "w") as f:
        f.write(e["directory"] + "\0" + "\0".join(keep))
    n += 1
if n == 0:
    sys.exit(f"check-syntax.sh: no source in {db} matches {pattern!r}")
print(f"check-syntax.sh: {n} sources matching {pattern!r}")
EOF

check_one() {
  local dir
  mapfile -d '' -t argv <"$1"
  dir=${argv[0]}
  (cd "$dir" && "${argv[@]:1}") || { echo "check-syntax.sh: FAILED: ${argv[-1]}" >&2; return 1; }
  echo "  ok ${argv[-1]}"
}
export -f check_one
start=$(date +%s)
find "$work" -name 'cmd.*' -print0 | xargs -0 -n1 -P"$jobs" bash -c 'check_one "$1"' _
echo "check-syntax.sh: all passed in $(( $(date +%s) - start )) s"
