#!/usr/bin/env bash
# The GPU check's one command (issue 13), run from the repository root on the device machine after
# `npm run gpu:pack` here (carry .gpu; docs/gpu.md has the exact call): brings the Vulkan loader if
# the machine lacks it, points the loader at NVIDIA's driver, unpacks Node + the bundle to /tmp,
# runs gpu/mnist-webgpu.ts's bundle (WebGPU) and then gpu/torch_peer.py (PyTorch, same U-Net, same
# batch, same card), all within GPU_TOTAL_S. Everything goes to $OUT (default out/gpu): run.log,
# summary.json, loss.csv, loss.png, samples.png (WebGPU) and torch.json (PyTorch and the ratio).
#   GPU_SIZE=tiny gpu/run-on-device.sh     the same command as a smoke test (lavapipe; PyTorch on CPU)
#   GPU_TOTAL_S (default 465)              the whole command's time; under the 8 minutes it is sized for
#   GPU_TIME_LIMIT_S (default 330)         the hard limit on the WebGPU program; it stops itself
#                                          earlier (GPU_TRAIN_SECONDS 150, GPU_DEADLINE_S 300)
#   GPU_PYTHON (default python3), GPU_TORCH_DEVICE (cuda when nvidia-smi exists, else cpu),
#   GPU_TORCH_SECONDS (default 30 per mode), GPU_SKIP_TORCH=1
# Other GPU_* settings: gpu/mnist-webgpu.ts.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK="${GPU_PACK:-.gpu}"
OUT="${OUT:-$PWD/out/gpu}"
LIMIT="${GPU_TIME_LIMIT_S:-330}"
TOTAL="${GPU_TOTAL_S:-465}"
export GPU_DEADLINE_S="${GPU_DEADLINE_S:-300}"
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
start=$(date +%s)
echo "run-on-device: $(uname -srm), $(nproc) cores, $(date -u +%FT%TZ)"

[ -f "$PACK/payload.tar.xz" ] || { echo "run-on-device: $PACK/payload.tar.xz is missing: run npm run gpu:pack and carry .gpu"; exit 2; }

# The Vulkan loader (Dawn dlopens libvulkan.so.1): the device README's debs, unpacked into / as it says.
# (grep without -q: with pipefail, -q's early exit would SIGPIPE ldconfig and read as "missing".)
if ! ldconfig -p | grep 'libvulkan\.so\.1' >/dev/null; then
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
echo "run-on-device: WebGPU part exit $rc after $(( $(date +%s) - start )) s"

# The PyTorch peer: same U-Net, batch and optimizer, on the same card; torch.json holds it and the ratio.
trc=skipped
if [ "${GPU_SKIP_TORCH:-}" != 1 ]; then
  if [ -n "${GPU_TORCH_DEVICE:-}" ]; then tdev="$GPU_TORCH_DEVICE"; elif command -v nvidia-smi >/dev/null; then tdev=cuda; else tdev=cpu; fi
  if [ "${GPU_SIZE:-}" = tiny ]; then tbatch="${GPU_BATCH:-4}"; tT="${GPU_T:-10}"; else tbatch="${GPU_BATCH:-128}"; tT="${GPU_T:-1000}"; fi
  left=$(( TOTAL - ($(date +%s) - start) - 5 ))
  if [ "$left" -lt 30 ]; then
    echo "run-on-device: PyTorch peer skipped: ${left} s left of GPU_TOTAL_S=${TOTAL}"
  else
    timeout -k 5 "$left" "${GPU_PYTHON:-python3}" "$work/app/torch_peer.py" --device "$tdev" --batch "$tbatch" --T "$tT" \
      --seconds "${GPU_TORCH_SECONDS:-30}" --budget "$left" --compile-seconds 100 --out "$OUT/torch.json" --webgpu "$OUT/summary.json"
    trc=$?
    [ $trc = 124 ] && echo "run-on-device: PyTorch peer killed at ${left} s (torch.json holds what finished)"
  fi
fi
echo "run-on-device: exit $rc (WebGPU), $trc (PyTorch) after $(( $(date +%s) - start )) s"
ls -l "$OUT"
[ -f "$OUT/summary.json" ] && cat "$OUT/summary.json"
[ -f "$OUT/torch.json" ] && cat "$OUT/torch.json"
exit $rc
