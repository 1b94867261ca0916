#!/usr/bin/env python3
"""PyTorch CPU reference for Eden's segmentation benchmarks (a performance peer, not part of Eden).

The U-Net of src/models/unet.ts on the ResNet of ../shared/bench/torch_adam_step.py (1-channel stem):
five decoder blocks (256, 128, 64, 32, 16 channels), each a x2 bilinear upsampling (half-pixel
centres), the encoder's skip of that scale (strides 16, 8, 4, 2; none at full resolution) and two
3x3 conv + batch norm + ReLU; a 1x1 head with bias, one logit per structure.

  --mode finetune: one step of `eden finetune` (encoder and decoder trained): forward, BCE + soft
                   Dice, backward, Adam (lr 1e-3), on random images and 0/1 targets;
  --mode segment:  inference (eval mode, no gradients, sigmoid), as `eden segment`'s forward pass;
  --mode save:     after one fine-tuning step, torch.save of what `eden finetune` saves to resume
                   (the model's state dict, Adam's state, a copy of the weights as the best so far)
                   to a temporary file, fsync, rename: seconds per save.

Prints one JSON line: images/s (median over --steps after --warmup), peak RSS. Needs Debian's
python3-torch. Run with the Eden benchmark's thread count:
  /usr/bin/python3 bench/torch_unet_step.py --mode finetune --arch resnet18 --size 256 --batch 8 --threads 2
"""
import argparse, json, os, resource, statistics, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench"))
from torch_adam_step import resnet  # noqa: E402  (the pretraining benchmark's encoder, same layers)


class Encoder(nn.Module):
    """The ResNet's stem (stride 2) and four stage outputs (strides 4, 8, 16, 32)."""

    def __init__(self, arch, width):
        super().__init__()
        layers = list(resnet(arch, width).children())
        self.stem = nn.Sequential(*layers[:3])
        self.pool = layers[3]
        blocks = [m for m in layers[4:] if isinstance(m, nn.Module) and hasattr(m, "c1")]
        depth = {"resnet18": [2, 2, 2, 2], "resnet50": [3, 4, 6, 3]}[arch]
        self.stages = nn.ModuleList()
        at = 0
        for n in depth:
            self.stages.append(nn.Sequential(*blocks[at:at + n]))
            at += n
        expansion = 4 if arch == "resnet50" else 1
        self.channels = (width, [width * 2 ** i * expansion for i in range(4)])

    def forward(self, x):
        stem = self.stem(x)
        h = self.pool(stem)
        outs = []
        for stage in self.stages:
            h = stage(h)
            outs.append(h)
        return stem, outs


class UNet(nn.Module):
    def __init__(self, arch, width, classes):
        super().__init__()
        self.encoder = Encoder(arch, width)
        stem, stages = self.encoder.channels
        scaled = [stages[3] // 2, stages[2] // 2, stages[1] // 2, stages[0] // 2, stem // 4]
        channels = [max(8, min(c, s)) for c, s in zip([256, 128, 64, 32, 16], scaled)]
        skips = [stages[2], stages[1], stages[0], stem, 0]
        self.blocks = nn.ModuleList()
        cin = stages[3]
        for c, skip in zip(channels, skips):
            self.blocks.append(nn.Sequential(
                nn.Conv2d(cin + skip, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()))
            cin = c
        self.head = nn.Conv2d(cin, classes, 1)

    def forward(self, x):
        stem, stages = self.encoder(x)
        skips = [stages[2], stages[1], stages[0], stem, None]
        h = stages[3]
        for block, skip in zip(self.blocks, skips):
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            if skip is not None:
                h = torch.cat([h, skip], 1)
            h = block(h)
        return self.head(h)


def segmentation_loss(logits, target):
    """src/train/segmenter.ts's segmentationLoss: mean BCE + (1 - mean soft Dice over structures)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((0, 2, 3))
    total = p.sum((0, 2, 3)) + target.sum((0, 2, 3))
    return bce + 1 - ((2 * inter + 1) / (total + 1)).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["finetune", "segment", "save"], default="finetune")
    ap.add_argument("--arch", default="resnet18"); ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--size", type=int, default=256); ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", type=int, default=3); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3); ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true", help="NHWC tensors (oneDNN's preferred layout on CPU; NCHW is PyTorch's default)")
    a = ap.parse_args()
    torch.manual_seed(0); torch.set_num_threads(a.threads)
    model = UNet(a.arch, a.width, a.classes)
    layout = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if a.mode == "save":
        return save_state(model, opt, a)
    times = []
    for step in range(a.warmup + a.steps):
        x = torch.randn(a.batch, 1, a.size, a.size).to(memory_format=layout)
        y = torch.randint(0, 2, (a.batch, a.classes, a.size, a.size)).float().to(memory_format=layout)
        t0 = time.perf_counter()
        if a.mode == "segment":
            model.eval()
            with torch.no_grad():
                torch.sigmoid(model(x))
        else:
            model.train()
            loss = segmentation_loss(model(x), y)
            opt.zero_grad(); loss.backward(); opt.step()
            loss.item()
        if step >= a.warmup: times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"engine": f"pytorch-{torch.__version__}-cpu", "mode": a.mode, "channels_last": a.channels_last, "arch": a.arch, "width": a.width, "size": a.size,
                      "batch": a.batch, "threads": a.threads, "step_s_median": round(med, 4),
                      "images_per_s": round(a.batch / med, 3), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


def save_state(model, opt, a):
    """Seconds per atomic torch.save of the training state (after one step, so that Adam has moments)."""
    import copy, tempfile
    model.train()
    x = torch.randn(a.batch, 1, a.size, a.size); y = torch.randint(0, 2, (a.batch, a.classes, a.size, a.size)).float()
    loss = segmentation_loss(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "best": copy.deepcopy(model.state_dict())}
    d = tempfile.mkdtemp(prefix="torch-bench-state-"); f = os.path.join(d, "state.pt")
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        tmp = f + ".tmp"
        with open(tmp, "wb") as out:
            torch.save(state, out); out.flush(); os.fsync(out.fileno())
        os.replace(tmp, f)
        if i >= a.warmup: times.append(time.perf_counter() - t0)
    mb = os.path.getsize(f) / 1e6
    os.remove(f); os.rmdir(d)
    med = statistics.median(times)
    print(json.dumps({"engine": f"pytorch-{torch.__version__}-cpu", "mode": "save", "arch": a.arch, "file_mb": round(mb, 1), "save_s_median": round(med, 3),
                      "saves_per_s": round(1 / med, 3), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
