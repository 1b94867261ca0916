"""How much of an image's identity survives two augmented views, with no network at all: the share
of images whose second view is the nearest (pixel correlation at 16x16) to their first among 64
images. Used for docs/PRETRAINING.md to choose crop and rotation ranges; not part of Eden.

  /usr/bin/python3 bench/recipe/view_oracle.py   (after moco_screen.py has cached the images)
"""
import torch, torchvision.transforms as T, torch.nn.functional as F, sys
torch.manual_seed(0)
import glob, os
imgs = torch.load(sorted(glob.glob(os.path.join(os.environ.get('TMPDIR', '/tmp'), 'moco_screen_imgs_*.pt')))[0])[:64]
def run(scale, rot, S=96, jit=True):
    ops = [T.RandomResizedCrop(S, scale=(scale, 1.0), ratio=(3/4, 4/3), antialias=True)]
    if jit: ops += [T.RandomApply([T.ColorJitter(0.4, 0.4)], p=0.8), T.RandomApply([T.GaussianBlur(9, sigma=(0.1, 2.0))], p=0.5)]
    ops += [T.RandomRotation(rot)]
    aug = T.Compose(ops)
    accs = []
    for r in range(5):
        a = torch.stack([aug(x) for x in imgs]); b = torch.stack([aug(x) for x in imgs])
        fa = F.interpolate(a, 16, mode='area').flatten(1); fb = F.interpolate(b, 16, mode='area').flatten(1)
        fa = F.normalize(fa - fa.mean(1, keepdim=True), dim=1); fb = F.normalize(fb - fb.mean(1, keepdim=True), dim=1)
        accs.append(((fa @ fb.t()).argmax(1) == torch.arange(64)).float().mean().item())
    return sum(accs) / len(accs)
for scale, rot, jit in [(0.2, 30, True), (0.5, 10, True), (0.8, 5, True), (0.2, 0, False), (1.0, 0, False)]:
    print(scale, rot, jit, run(scale, rot, jit=jit), flush=True)
