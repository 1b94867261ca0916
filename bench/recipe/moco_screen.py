"""Recipe screen for small-scale contrastive pretraining on radiographs (PyTorch, Debian's
python3-torch): MoCo at level 0 on folders of images, with the knobs the CPU recipe was chosen by.
Derived from ../shared/bench/torch_moco_reference.py. Used for docs/PRETRAINING.md; not part of Eden.

  /usr/bin/python3 bench/recipe/moco_screen.py roots=DIR[,DIR...] [key=value ...]

Keys (defaults): steps=640 lr=0.03 (absolute, batch B) m=0.99 K=512 S=96 (view px) B=32 tau=0.2
scale=0.2 (crop area lower bound) rot=30 (degrees) headbn=0 (0: Linear-ReLU-Linear, 1: BN after the
hidden layer, 2: BN after the hidden layer and on the output, MoCo v3 style) selfmask=0 (mask
queued keys of the query's own image) sym=0 (symmetric loss) shufflebn=0 (key BN over two shuffled
halves) val=64 (held-out images for the retrieval signal) out=FILE.json.
Every 40 steps it prints the loss, mean positive and negative cosines, the keys' per-dimension std
(1/sqrt(128) = 0.088 for uniform keys), held-out own-view retrieval among `val` images (eval-mode
BN), and for the student the mean cosine between different images' pooled features, hidden
activations and outputs, and the fraction of dead hidden units.
"""

import torch, torchvision, math, os, sys, time, random, json, numpy as np
import torch.nn as nn, torch.nn.functional as F
from PIL import Image
import torchvision.transforms as T
torch.set_num_threads(2); torch.manual_seed(0); random.seed(0)
opt = dict(headbn=0, roots='', steps=640, lr=0.03, m=0.99, K=512, S=96, selfmask=0, sym=0, tau=0.2, scale=0.2, B=32, out='o.json', shufflebn=0, warm=0, rot=30, val=64)
for a in sys.argv[1:]:
    k, v = a.split('='); opt[k] = type(opt[k])(v) if not isinstance(opt[k], str) else v
print(opt, flush=True)
files = []
for r in opt['roots'].split(','):
    for dp, dn, fn in os.walk(r):
        files += [os.path.join(dp, f) for f in fn if f.lower().endswith(('.png', '.jpg', '.jpeg')) and '/masks/' not in os.path.join(dp, f)]
files.sort()
cache = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'moco_screen_imgs_%d.pt' % len(files))
if os.path.exists(cache): imgs = torch.load(cache)
else:
    def load(p):
        im = Image.open(p).convert('L').resize((384, 384), Image.BILINEAR)
        x = torch.from_numpy(np.array(im)).float()
        lo, hi = torch.quantile(x.flatten()[::7], 0.01), torch.quantile(x.flatten()[::7], 0.99)
        return ((x - lo) / (hi - lo + 1e-6)).clamp(0, 1)[None]
    imgs = torch.stack([load(p) for p in files]); torch.save(imgs, cache)
g = torch.Generator().manual_seed(1); perm0 = torch.randperm(len(imgs), generator=g)
val = imgs[perm0[:opt['val']]]; imgs = imgs[perm0[opt['val']:]]
N = len(imgs); print('images', N, 'val', len(val), flush=True)
S = opt['S']; B = opt['B']; K = opt['K']; m = opt['m']; tau = opt['tau']
aug = T.Compose([T.RandomResizedCrop(S, scale=(opt['scale'], 1.0), ratio=(3/4, 4/3), antialias=True),
                 T.RandomApply([T.ColorJitter(0.4, 0.4)], p=0.8),
                 T.RandomApply([T.GaussianBlur(9, sigma=(0.1, 2.0))], p=0.5),
                 T.RandomRotation(opt['rot'])])
def norm(x): return (x - 0.5) / 0.25
def enc():
    net = torchvision.models.resnet18(num_classes=512)
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    net.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128)) if not opt['headbn'] else nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128)) if opt['headbn'] == 1 else nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128, bias=False), nn.BatchNorm1d(128, affine=False))
    return net
q_enc = enc(); k_enc = enc(); k_enc.load_state_dict(q_enc.state_dict())
for p in k_enc.parameters(): p.requires_grad = False
queue = F.normalize(torch.randn(K, 128), dim=1); ptr = 0; qids = torch.full((K,), -1, dtype=torch.long)
sgd = torch.optim.SGD(q_enc.parameters(), lr=opt['lr'], momentum=0.9, weight_decay=1e-4)
def keys(x):
    with torch.no_grad():
        if opt['shufflebn']:
            idx = torch.randperm(len(x)); k = torch.empty(len(x), 128); h = len(x) // 2
            kk = torch.cat([k_enc(x[idx[:h]]), k_enc(x[idx[h:]])]); k[idx] = kk
        else: k = k_enc(x)
        return F.normalize(k, dim=1)
def nce(q, k, ids):
    lpos = (q * k).sum(1, keepdim=True); lneg = q @ queue.t()
    if opt['selfmask']: lneg = lneg.masked_fill(qids[None, :] == ids[:, None], -1e9)
    logits = torch.cat([lpos, lneg], 1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)), lpos, lneg
def retrieval():
    q_enc.eval(); k_enc.eval()
    with torch.no_grad():
        gen_state = torch.get_rng_state(); torch.manual_seed(123)
        xa = norm(torch.stack([aug(b) for b in val])); xb = norm(torch.stack([aug(b) for b in val]))
        torch.set_rng_state(gen_state)
        a = F.normalize(q_enc(xa), dim=1); b = F.normalize(k_enc(xb), dim=1)
        acc = ((a @ b.t()).argmax(1) == torch.arange(len(a))).float().mean().item()
    q_enc.train(); k_enc.train(); return acc
step = 0; t0 = time.time(); hist = []; total = opt['steps']
while step < total:
    perm = torch.randperm(N)
    for i in range(0, N - B + 1, B):
        if step >= total: break
        w = opt['warm']
        cur = opt['lr'] * (min(1, (step + 1) / w) if w else 1) * 0.5 * (1 + math.cos(math.pi * step / total))
        for gr in sgd.param_groups: gr['lr'] = cur
        ids = perm[i:i + B]; batch = imgs[ids]
        x1 = norm(torch.stack([aug(b) for b in batch])); x2 = norm(torch.stack([aug(b) for b in batch]))
        for pq, pk in zip(q_enc.parameters(), k_enc.parameters()): pk.data.mul_(m).add_(pq.detach(), alpha=1 - m)
        k2 = keys(x2); q1 = F.normalize(q_enc(x1), dim=1)
        loss, lpos, lneg = nce(q1, k2, ids)
        if opt['sym']:
            k1 = keys(x1); q2 = F.normalize(q_enc(x2), dim=1); l2, _, _ = nce(q2, k1, ids); loss = (loss + l2) / 2
        sgd.zero_grad(); loss.backward(); sgd.step()
        queue[ptr:ptr + B] = k2; qids[ptr:ptr + B] = ids; ptr = (ptr + B) % K
        neg = lneg[lneg > -2]
        kstd = k2.std(0).mean().item()
        hist.append(dict(step=step, loss=loss.item(), pos=lpos.mean().item(), neg=neg.mean().item(), kstd=kstd))
        if step % 40 == 0 or step == total - 1:
            r = retrieval(); hist[-1]['retr'] = r
            with torch.no_grad():
                feat = {}
                h1 = q_enc.fc[0].register_forward_hook(lambda m, i, o: feat.__setitem__('pooled', i[0]))
                h2 = q_enc.fc[2].register_forward_hook(lambda m, i, o: feat.__setitem__('hidden', o))
                out = q_enc(x1); h1.remove(); h2.remove()
                P = F.normalize(feat['pooled'], dim=1); Hn = F.normalize(feat['hidden'], dim=1); O = F.normalize(out, dim=1)
                off = lambda M: ((M @ M.t()).sum() - M.shape[0]) / (M.shape[0] * (M.shape[0] - 1))
                dead = (feat['hidden'] > 0).float().sum(0).eq(0).float().mean().item()
                print(f"   pooled cos {off(P).item():.3f} hidden cos {off(Hn).item():.3f} out cos {off(O).item():.3f} dead hidden {dead:.3f} hidden-bias-norm {0.0:.3f} outW {0.0:.3f}", flush=True)
            print(f"step {step} loss {loss.item():.3f} pos {lpos.mean().item():.3f} neg {neg.mean().item():.3f} kstd {kstd:.4f} retr {r:.3f} {time.time()-t0:.0f}s", flush=True)
        step += 1
json.dump(hist, open(opt['out'], 'w'))
