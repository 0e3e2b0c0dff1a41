#!/usr/bin/env bash
# The aarch64 (Jetson) build of the library, its unit tests run under qemu-user:
#
#   bash scripts/check_aarch64.sh
#
# Cross-compiles with Debian's aarch64 GCC as linker (and C compiler for mimalloc), then runs the
# library's unit tests twice: on an emulated CPU with the dot-product extension (`-cpu max`: the
# `neon+dotprod` INT8 kernel is detected and checked bit for bit against the integer definition)
# and on a Cortex-A53 without it (the portable kernels only). Emulation checks results, not speed.
# Installs what it needs: the rustup target, and gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and
# qemu-user from apt.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  echo "== rustup target add $target"
  rustup target add "$target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1 \
  || [ ! -d /usr/aarch64-linux-gnu/lib ]; then
  echo "== installing the aarch64 cross compiler and qemu-user (Debian packages)"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)

echo "== cargo clippy --target $target"
cargo clippy --target "$target" --release --all-targets -- -D warnings

echo "== cargo test --target $target --lib, emulated CPU with dot products (qemu -cpu max)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${qemu[*]} -cpu max" PILLARQ_EXPECT_KERNELS=generic,neon+dotprod \
  cargo test --target "$target" --lib

echo "== the kernel tests again on an emulated Cortex-A53 (no dot products)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${qemu[*]} -cpu cortex-a53" PILLARQ_EXPECT_KERNELS=generic \
  cargo test --target "$target" --lib -- exec::cpu
