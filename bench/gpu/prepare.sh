#!/usr/bin/env bash
# Packs what the GPU benchmark needs into .gpu/ (git-ignored) for the device machine, which has no
# Node and no network: a Node binary, the benchmark bundled by esbuild, the webgpu package with
# Dawn, the Vulkan loader debs, and the PyTorch reference. Run on this machine, then carry .gpu.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu/node_modules
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > .gpu/node.xz
npx esbuild bench/run.ts --bundle --platform=node --format=esm --target=node20 --external:webgpu \
  --banner:js="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);" \
  --outfile=.gpu/bench.mjs --log-level=warning
mkdir -p .gpu/node_modules/webgpu/dist/linux-x64
cp node_modules/webgpu/{package.json,index.js} .gpu/node_modules/webgpu/
cp node_modules/webgpu/dist/linux-x64/dawn.node .gpu/node_modules/webgpu/dist/linux-x64/
tar -C .gpu -cJf .gpu/webgpu.tar.xz node_modules && rm -rf .gpu/node_modules
cp bench/gpu/torch_cuda_step.py ../shared/bench/torch_adam_step.py bench/gpu/run-on-device.sh .gpu/
mkdir -p /tmp/eden-amd64/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/eden-amd64'
apt-get $o update -qq
# The Vulkan loader, and the GL/X libraries NVIDIA's Vulkan ICD (libGLX_nvidia) needs to load.
(cd .gpu && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 libx11-6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libxext6 >/dev/null)
du -sh .gpu; ls -la .gpu
