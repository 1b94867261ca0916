#!/usr/bin/env python3
"""PyTorch CUDA peer of Eden's webgpu benchmark: the same Adam step as ../shared/bench/torch_adam_step.py
(whose model builder it imports; pass its folder with --shared), on the GPU, fp32, timed with
synchronisation. Prints one JSON line. A performance peer, not part of Eden."""
import argparse, json, statistics, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--shared", required=True, help="folder holding torch_adam_step.py")
ap.add_argument("--arch", default="resnet18"); ap.add_argument("--width", type=int, default=64)
ap.add_argument("--size", type=int, default=128); ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--queue", type=int, default=16384); ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--warmup", type=int, default=5)
a = ap.parse_args()
sys.path.insert(0, a.shared)
import torch, torch.nn.functional as F
from torch_adam_step import resnet

torch.manual_seed(0)
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as TF.js computes
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")
student = resnet(a.arch, a.width).to(dev); teacher = resnet(a.arch, a.width).to(dev)
teacher.load_state_dict(student.state_dict())
for p in teacher.parameters(): p.requires_grad_(False)
opt = torch.optim.SGD(student.parameters(), lr=0.03 * a.batch / 256, momentum=0.9, weight_decay=1e-4)
queue = F.normalize(torch.randn(a.queue, 128, device=dev), dim=1)
times = []
for step in range(a.warmup + a.steps):
    xq = torch.randn(a.batch, 1, a.size, a.size, device=dev); xk = torch.randn(a.batch, 1, a.size, a.size, device=dev)
    torch.cuda.synchronize(); t0 = time.perf_counter()
    with torch.no_grad():
        k = F.normalize(teacher(xk), dim=1)
    q = F.normalize(student(xq), dim=1)
    lpos = (q * k).sum(1, keepdim=True); lneg = q @ queue.t()
    lneg = lneg.masked_fill(lneg.detach() >= 0.8, float("-inf"))
    loss = F.cross_entropy(torch.cat([lpos, lneg], 1) / 0.2, torch.zeros(a.batch, dtype=torch.long, device=dev))
    opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        for pt, ps in zip(teacher.parameters(), student.parameters()): pt.mul_(0.999).add_(ps, alpha=0.001)
        queue = torch.cat([k, queue[:-a.batch]])
    loss.item(); torch.cuda.synchronize()
    if step >= a.warmup: times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(json.dumps({"engine": f"pytorch-{torch.__version__}-cuda-fp32", "device": torch.cuda.get_device_name(0), "arch": a.arch, "width": a.width,
                  "size": a.size, "batch": a.batch, "queue": a.queue, "step_s_median": round(med, 5), "images_per_s": round(a.batch / med, 2),
                  "peak_gpu_mb": torch.cuda.max_memory_allocated() // 2**20}))
