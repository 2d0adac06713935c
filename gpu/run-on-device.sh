#!/usr/bin/env bash
# The GPU check's one command (issue 3), run from the repository root on the device machine after
# `npm run gpu:pack` here (carry .gpu): brings the Vulkan loader if the machine lacks it, points the
# loader at NVIDIA's driver (device README), unpacks Node + the bundle to /tmp, and runs
# gpu/mnist-webgpu.ts's bundle under a hard time limit. Everything goes to $OUT (default out/gpu):
# run.log, summary.json, loss.csv, loss.png, samples.png.
#   GPU_SIZE=tiny gpu/run-on-device.sh     the same command as a smoke test (lavapipe: about a minute)
#   GPU_TIME_LIMIT_S (default 440)         the hard limit on the training program; it stops itself
#                                          earlier (GPU_TRAIN_SECONDS 240, GPU_DEADLINE_S 400)
# Other GPU_* settings: gpu/mnist-webgpu.ts.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK="${GPU_PACK:-.gpu}"
OUT="${OUT:-$PWD/out/gpu}"
LIMIT="${GPU_TIME_LIMIT_S:-440}"
export GPU_DEADLINE_S="${GPU_DEADLINE_S:-400}"
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
start=$(date +%s)
echo "run-on-device: $(uname -srm), $(nproc) cores, $(date -u +%FT%TZ)"

[ -f "$PACK/payload.tar.xz" ] || { echo "run-on-device: $PACK/payload.tar.xz is missing: run npm run gpu:pack and carry .gpu"; exit 2; }

# The Vulkan loader (Dawn dlopens libvulkan.so.1): the device README's debs, unpacked into / as it says.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  [ "$(id -u)" = 0 ] || { echo "run-on-device: libvulkan.so.1 is missing and unpacking the loader debs into / needs root"; exit 2; }
  for f in "$PACK"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
  echo "run-on-device: unpacked $(ls "$PACK"/debs/*.deb | wc -l) loader packages into /"
fi
# NVIDIA's Vulkan driver manifest on the device machines (device README); elsewhere the loader searches as usual.
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv" ]; then export VK_DRIVER_FILES="$nv"; fi
echo "run-on-device: VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset, the loader searches its default paths}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader; fi

work="${GPU_WORK:-/tmp/ddpm-gpu}"
rm -rf "$work" && mkdir -p "$work"
python3 - "$PACK/payload.tar.xz" "$work" <<'EOF' || { echo "run-on-device: unpacking failed"; exit 2; }
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    try:
        t.extractall(sys.argv[2], filter='data')
    except TypeError:  # Python without extraction filters
        t.extractall(sys.argv[2])
EOF
echo "run-on-device: unpacked in $(( $(date +%s) - start )) s; node $("$work/node" --version)"

OUT="$OUT" timeout -k 10 "$LIMIT" "$work/node" "$work/app/mnist-webgpu.cjs" "$@"
rc=$?
[ $rc = 124 ] && echo "run-on-device: killed at the ${LIMIT} s limit (summary.json holds what finished)"
echo "run-on-device: exit $rc after $(( $(date +%s) - start )) s"
ls -l "$OUT"
[ -f "$OUT/summary.json" ] && cat "$OUT/summary.json"
exit $rc
