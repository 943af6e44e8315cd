#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages eigenformer's build needs and this machine lacks.
# Run as root (or with sudo available). Does nothing when everything is present.
#   scripts/install-deps.sh           build + test dependencies
#   scripts/install-deps.sh --aarch64 also the AArch64 cross compiler and qemu-user (aarch64 preset)
#   scripts/install-deps.sh --clang   also clang++ with its sanitizer and OpenMP runtimes, and clang-tidy
#                                     (sanitize preset, scripts/clang-tidy.sh)
set -euo pipefail

# python3: scripts/check-syntax.sh and scripts/clang-tidy.sh read compile_commands.json with it
pkgs=(g++ cmake ninja-build libeigen3-dev libgtest-dev googletest libbenchmark-dev libopenblas-dev valgrind python3)
case "${1:-}" in
  --aarch64) pkgs+=(g++-aarch64-linux-gnu qemu-user) ;;
  --clang) pkgs+=(clang-14 libclang-rt-14-dev libomp-14-dev clang-tidy-14) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
