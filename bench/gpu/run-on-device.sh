#!/usr/bin/env bash
# Runs on the device machine from the repository root, with .gpu carried: PyTorch CUDA, then
# Eden on webgpu (Dawn on NVIDIA's Vulkan driver), same workloads. Results to $OUT.
set -uo pipefail
G=.gpu
for f in $G/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_ICD_FILENAMES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$VK_ICD_FILENAMES" ] || export VK_ICD_FILENAMES=$(ls /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
xz -dc $G/node.xz > /tmp/node && chmod +x /tmp/node
tar -C $G -xJf $G/webgpu.tar.xz
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $OUT/gpu.txt
echo "vulkan icd: $VK_ICD_FILENAMES"
for w in "resnet18 64 128 16" "resnet50 64 224 8"; do
  set -- $w
  timeout 90 python3 $G/torch_cuda_step.py --shared $G --arch $1 --width $2 --size $3 --batch $4 | tee -a $OUT/results.jsonl
done
# Before (TF.js ops: EDEN_WEBGPU_FUSED=0, EDEN_WEBGPU_CONV=0), with Eden's fused kernels, and with step replay (issue 13).
for w in a b; do
  (cd $G && EDEN_WEBGPU_FUSED=0 EDEN_WEBGPU_CONV=0 timeout 150 /tmp/node bench.mjs --child $w --backend webgpu --steps 10 --warmup 3) 2>&1 | grep -v "^Warning\|^ERROR" | sed 's/^{/{"variant":"tfjs-ops",/' | tee -a $OUT/eden.log
  (cd $G && timeout 150 /tmp/node bench.mjs --child $w --backend webgpu --steps 10 --warmup 3 --profile) 2>&1 | grep -v "^Warning\|^ERROR" | sed 's/^{/{"variant":"fused",/' | tee -a $OUT/eden.log
  (cd $G && timeout 150 /tmp/node bench.mjs --child $w --backend webgpu --steps 10 --warmup 3 --replay) 2>&1 | grep -v "^Warning\|^ERROR" | sed 's/^{/{"variant":"replay",/' | tee -a $OUT/eden.log
done
# U-Net fine-tuning (eden finetune's step, ResNet-18, 256 px, batch 8): TF.js ops + fused kernels, then replayed.
for r in "" "--replay"; do
  (cd $G && timeout 150 /tmp/node bench.mjs --child ft18 --backend webgpu --steps 5 --warmup 2 $r) 2>&1 | grep -v "^Warning\|^ERROR" | tee -a $OUT/eden.log
done
# Each convolution of (a): TF.js's kernels against Eden's implicit GEMM (EDEN_WEBGPU_CONV routing).
# Twice: vec4 loads on (the default) and off (EDEN_WEBGPU_CONV_VEC4=0): neutral on lavapipe, unmeasured on a GPU.
(cd $G && timeout 120 /tmp/node bench.mjs --child convs --backend webgpu --size 128 --batch 16 --steps 5 --warmup 2) 2>&1 | grep -v "^Warning\|^ERROR" | sed 's/^{/{"variant":"vec4",/' | tee -a $OUT/eden.log
(cd $G && EDEN_WEBGPU_CONV_VEC4=0 timeout 120 /tmp/node bench.mjs --child convs --backend webgpu --size 128 --batch 16 --steps 5 --warmup 2) 2>&1 | grep -v "^Warning\|^ERROR" | sed 's/^{/{"variant":"scalar",/' | tee -a $OUT/eden.log
# InfoNCE at the cpu preset's shape and at batch 256: tensor ops, Eden's programs in workgroup memory, and with subgroups.
for b in 32 256; do
  (cd $G && timeout 60 /tmp/node bench.mjs --child infonce --backend webgpu --batch $b --steps 10 --warmup 3) 2>&1 | grep -v "^Warning\|^ERROR" | tee -a $OUT/eden.log
done
grep '^{' $OUT/eden.log >> $OUT/results.jsonl
