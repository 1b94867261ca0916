#!/usr/bin/env bash
# Runs on the device machine from the repository root, with .gpu carried: PyTorch CUDA, then
# Eden on webgpu (Dawn on NVIDIA's Vulkan driver), same workloads. Results to $OUT (results.jsonl,
# eden.log, gpu.txt), written as each item finishes.
#
# One call of the device tool runs at most 600 s, and a session has 15 minutes of device time in
# all: everything here runs inside one budget (EDEN_GPU_BUDGET_S, default 500 s), most important
# first; an item is given at most the time left, and one that would start with under 30 s left is
# logged as skipped, so that the call returns what it measured instead of being killed.
#
# EDEN_GPU_SMOKE=1 runs every Eden item at a tiny size (32 px, batch 2, 2 steps) on whatever
# adapter this machine has (lavapipe here), skipping the NVIDIA set-up and PyTorch CUDA: the
# plumbing checked before a GPU is lent (`OUT=/tmp/out EDEN_GPU_SMOKE=1 bash .gpu/run-on-device.sh`).
set -uo pipefail
G=.gpu
: "${OUT:?set OUT to the results folder}"
BUDGET=${EDEN_GPU_BUDGET_S:-500}
SMOKE=${EDEN_GPU_SMOKE:-0}
SMALL=()
[ "$SMOKE" = 1 ] && SMALL=(--size 32 --batch 2 --steps 2 --warmup 1)

# limit LABEL SECONDS WORKLOAD: the seconds this item may run (at most what is left); fails when it is skipped.
limit() {
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then
    echo "{\"variant\":\"$1\",\"workload\":\"$3\",\"skipped\":\"budget: ${left} s left of ${BUDGET}\"}" | tee -a "$OUT/eden.log" >&2
    return 1
  fi
  echo $(($2 < left ? $2 : left))
}

# eden LABEL SECONDS ENV -- BENCH ARGS: one benchmark child on webgpu, its JSON line labelled.
eden() {
  local label=$1 seconds envs=$3
  seconds=$(limit "$label" "$2" "$5") || return 0
  shift 4
  (cd $G && env $envs timeout "$seconds" /tmp/node bench.mjs --child "$@" --backend webgpu "${SMALL[@]}") 2>&1 |
    grep -v "^Warning\|^ERROR" | sed "s/^{/{\"variant\":\"$label\",/" | tee -a "$OUT/eden.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "{\"variant\":\"$label\",\"workload\":\"$1\",\"failed\":\"exit $rc$([ "$rc" = 124 ] && echo ": over its $seconds s")\"}" | tee -a "$OUT/eden.log"
}

if [ "$SMOKE" != 1 ]; then
  for f in $G/*.deb; do dpkg -x "$f" /; done; ldconfig
  export VK_ICD_FILENAMES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$VK_ICD_FILENAMES" ] || export VK_ICD_FILENAMES=$(ls /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
  echo "vulkan icd: $VK_ICD_FILENAMES"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fi
xz -dc $G/node.xz > /tmp/node && chmod +x /tmp/node
tar -C $G -xJf $G/webgpu.tar.xz

# 1. The peer: PyTorch CUDA on workloads (a) and (b).
if [ "$SMOKE" != 1 ]; then
  for w in "resnet18 64 128 16" "resnet50 64 224 8"; do
    set -- $w
    s=$(limit torch 90 "$1") || continue
    timeout "$s" python3 $G/torch_cuda_step.py --shared $G --arch $1 --width $2 --size $3 --batch $4 | tee -a "$OUT/results.jsonl"
  done
fi
# 2. Eden, the headline: step replay (issue 13), then Eden's kernels without replay (with TF.js's
#    per-kernel profile for (a)), then TF.js's ops alone (EDEN_WEBGPU_FUSED=0 EDEN_WEBGPU_CONV=0).
#    Every line has images/s, dispatches, host time, GPU time in kernels and its share of the step.
eden replay 150 "" -- a --steps 10 --warmup 3 --replay
eden replay 150 "" -- b --steps 10 --warmup 3 --replay
#    The same with every convolution tuned on this GPU (EDEN_WEBGPU_CONV=tune; the default routing
#    was measured on lavapipe): the line's conv_tuning says what was chosen and how long tuning took.
eden replay-tuned 180 "EDEN_WEBGPU_CONV=tune" -- a --steps 10 --warmup 3 --replay
eden replay-tuned 180 "EDEN_WEBGPU_CONV=tune" -- b --steps 10 --warmup 3 --replay
eden fused 150 "" -- a --steps 10 --warmup 3 --profile
eden fused 150 "" -- b --steps 10 --warmup 3
eden tfjs-ops 120 "EDEN_WEBGPU_FUSED=0 EDEN_WEBGPU_CONV=0" -- a --steps 10 --warmup 3
eden tfjs-ops 120 "EDEN_WEBGPU_FUSED=0 EDEN_WEBGPU_CONV=0" -- b --steps 10 --warmup 3
# 3. U-Net fine-tuning (eden finetune's step, ResNet-18, 256 px, batch 8), replayed and not.
eden replay 120 "" -- ft18 --steps 5 --warmup 2 --replay
eden fused 120 "" -- ft18 --steps 5 --warmup 2
# 4. Each convolution of (a): TF.js's kernels against Eden's implicit GEMM (the routing in
#    webgpu-conv.ts was measured on lavapipe), with vec4 loads (the default) and scalar loads.
eden vec4 120 "" -- convs --size 128 --batch 16 --steps 5 --warmup 2
eden scalar 120 "EDEN_WEBGPU_CONV_VEC4=0" -- convs --size 128 --batch 16 --steps 5 --warmup 2
# 5. InfoNCE at the cpu preset's shape and at batch 256: tensor ops, workgroup memory, subgroups.
eden infonce 60 "" -- infonce --batch 32 --steps 10 --warmup 3
eden infonce 60 "" -- infonce --batch 256 --steps 10 --warmup 3
grep '^{' "$OUT/eden.log" >> "$OUT/results.jsonl"
echo "done in ${SECONDS} s of ${BUDGET}"
