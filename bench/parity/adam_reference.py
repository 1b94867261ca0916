"""Training-dynamics parity, the reference side: Adam (METHOD.md §3-5) written independently in
PyTorch, trained on the batches Eden exported (bench/parity/dump.ts), from Eden's initial state.

  /usr/bin/python3 bench/parity/adam_reference.py DIR [OUT.jsonl] [STEPS]
      # writes DIR/torch-metrics.jsonl (or OUT.jsonl); STEPS caps the steps (default: all exported)
  TORCH_THREADS=1 ...   # another summation order: the float-noise floor of the comparison

Same step and loop as Eden, implemented from METHOD.md, not from Eden's code:
  teacher keys k = norm(h_xi(f_xi(x_k))) (key encoder in train mode: batch statistics, its own
  running statistics); q = norm(h_theta(f_theta(x_q))); InfoNCE over [k+, queue] / tau with the
  purposive pruner (raw cosine >= threshold masked, levels > 0, when enabled); SGD (momentum,
  weight decay, PyTorch semantics) with a cosine schedule that restarts with the optimiser at each
  stage; EMA xi <- m xi + (1 - m) theta over the parameters (not the BN buffers) after the step,
  which is MoCo's order shifted by one step (MoCo updates right before computing the keys); FIFO
  enqueue of k. Validation at each epoch end on the exported fixed views: InfoNCE and own-key
  retrieval, BN in batch mode without updating running statistics.
Only Debian's python3-torch and numpy are needed. Never a runtime dependency of Eden.
"""
import json, math, os, struct, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get('TORCH_THREADS', '2')))


def read_safetensors(path):
    raw = open(path, 'rb').read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop('__metadata__', {})
    out = {}
    for name, spec in header.items():
        assert spec['dtype'] == 'F32', spec
        a, b = spec['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], dtype='<f4').copy()).reshape(spec['shape'])
    return out, meta


class Block(nn.Module):
    def __init__(self, cin, c, stride, bottleneck):
        super().__init__()
        self.bottleneck = bottleneck
        exp = 4 if bottleneck else 1
        if bottleneck:
            self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
            self.conv3, self.bn3 = nn.Conv2d(c, c * 4, 1, bias=False), nn.BatchNorm2d(c * 4)
        else:
            self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.downsample = nn.Sequential(nn.Conv2d(cin, c * exp, 1, stride, bias=False), nn.BatchNorm2d(c * exp)) if stride != 1 or cin != c * exp else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            y = F.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
        else:
            y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


ARCHS = {'resnet18': (False, [2, 2, 2, 2]), 'resnet34': (False, [3, 4, 6, 3]), 'resnet50': (True, [3, 4, 6, 3]), 'resnet-tiny': (False, [1, 1, 1, 1])}


class Encoder(nn.Module):
    """torchvision's ResNet layout (names included) with a width multiplier and 1 input channel, plus the MoCo-v2 head."""

    def __init__(self, arch, width, dim, head_norm='none'):
        super().__init__()
        bottleneck, depths = ARCHS[arch]
        self.conv1, self.bn1 = nn.Conv2d(1, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width)
        cin = width
        for s, n in enumerate(depths):
            c = width * 2 ** s
            blocks = []
            for j in range(n):
                blocks.append(Block(cin, c, 2 if j == 0 and s > 0 else 1, bottleneck))
                cin = c * (4 if bottleneck else 1)
            setattr(self, f'layer{s + 1}', nn.Sequential(*blocks))
        if head_norm == 'batchnorm':
            # Linear -> BN -> ReLU -> Linear -> BN without affine (Eden stores the fixed 1/0 scale and
            # shift of the last one as buffers: kept here as frozen parameters of the same names).
            self.fc = nn.Sequential(nn.Linear(cin, cin), nn.BatchNorm1d(cin), nn.ReLU(), nn.Linear(cin, dim), nn.BatchNorm1d(dim))
            self.fc[4].weight.requires_grad = False
            self.fc[4].bias.requires_grad = False
        else:
            self.fc = nn.Sequential(nn.Linear(cin, cin), nn.ReLU(), nn.Linear(cin, dim))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for s in range(4):
            x = getattr(self, f'layer{s + 1}')(x)
        return self.fc(x.mean((2, 3)))


def set_bn_momentum(model, m):
    for mod in model.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            mod.momentum = m


def info_nce(q, k, queue, tau, threshold):
    lpos = (q * k).sum(1, keepdim=True)          # B x 1
    lneg = q @ queue.t()                          # B x K
    raw = lneg.detach()
    pruned = torch.zeros_like(raw, dtype=torch.bool) if threshold is None else raw >= threshold
    logits = torch.cat([lpos, lneg.masked_fill(pruned, -1e9)], 1) / tau
    loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    flat = raw.flatten()
    top = max(1, math.ceil(0.001 * flat.numel() - 1e-9))
    return loss, dict(pos=lpos.detach().mean().item(), neg=raw.mean().item(), neg_p999=flat.topk(top).values.min().item(), pruned=pruned.float().mean().item())


def main(d, out_file=None, max_steps=None):
    meta = json.load(open(os.path.join(d, 'meta.json')))
    if max_steps:
        meta['steps'] = min(meta['steps'], max_steps)
    c = meta['config']
    init, tmeta = read_safetensors(os.path.join(d, 'init.safetensors'))
    arch, width, dim = c['model']['backbone'], c['model']['width'], c['model']['projectionDim']
    head_norm = c['model'].get('headNorm', 'none')
    student, teacher = Encoder(arch, width, dim, head_norm), Encoder(arch, width, dim, head_norm)
    for role, net in (('student', student), ('teacher', teacher)):
        sd = {k[len(role) + 1:]: v for k, v in init.items() if k.startswith(role + '.')}
        sd.update({k: v for k, v in net.state_dict().items() if k.endswith('num_batches_tracked')})
        net.load_state_dict(sd)
    for p in teacher.parameters():
        p.requires_grad = False
    queue = init['queue'].clone()
    ptr = int(tmeta.get('queue_pointer', '0'))
    K = queue.shape[0]
    B, S = c['optim']['batchSize'], c['views']['size']
    tau, m = c['contrast']['temperature'], c['contrast']['momentum']
    levels = c['curriculum']['levels']
    epochs = c['curriculum']['epochs'] if isinstance(c['curriculum']['epochs'], list) else [c['curriculum']['epochs']] * len(levels)
    spe = meta['stepsPerEpoch']
    base_lr = c['optim']['baseLr'] * B / 256
    out = open(out_file or os.path.join(d, 'torch-metrics.jsonl'), 'w')
    step = 0
    for stage, level in enumerate(levels):
        stage_steps = epochs[stage] * spe
        threshold = c['contrast']['pruneThreshold'] if c['contrast']['prune'] and level > 0 else None
        opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=base_lr, momentum=c['optim']['momentum'], weight_decay=c['optim']['weightDecay'])
        for epoch in range(epochs[stage]):
            for b in range(spe):
                if step >= meta['steps']:
                    return
                lr = base_lr * 0.5 * (1 + math.cos(math.pi * min(epoch * spe + b, stage_steps) / stage_steps))
                for g in opt.param_groups:
                    g['lr'] = lr
                v = torch.from_numpy(np.fromfile(os.path.join(d, 'views', f'{step:06d}.f32'), dtype='<f4')).reshape(2, B, 1, S, S)
                with torch.no_grad():
                    k = F.normalize(teacher(v[1]), dim=1)
                q = F.normalize(student(v[0]), dim=1)
                loss, stats = info_nce(q, k, queue, tau, threshold)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for pt, ps in zip(teacher.parameters(), student.parameters()):
                        if ps.requires_grad:
                            pt.mul_(m).add_(ps, alpha=1 - m)
                    idx = (ptr + torch.arange(B)) % K
                    queue[idx] = k
                    ptr = (ptr + B) % K
                spread = (k.std(0, unbiased=False).mean() * math.sqrt(k.shape[1])).item()
                step += 1
                out.write(json.dumps(dict(type='step', stage=stage + 1, level=level, epoch=epoch + 1, step=step, loss=loss.item(), lr=lr, key_spread=spread, **stats)) + '\n')
                out.flush()
            val = validate(d, stage, student, teacher, queue, tau, threshold, S)
            if val:
                out.write(json.dumps(dict(type='epoch', stage=stage + 1, level=level, epoch=epoch + 1, step=step, **val)) + '\n')


def validate(d, stage, student, teacher, queue, tau, threshold, S):
    files = sorted(f for f in os.listdir(os.path.join(d, 'val')) if f.startswith(f's{stage}-'))
    if not files:
        return None
    set_bn_momentum(student, 0.0)
    set_bn_momentum(teacher, 0.0)
    total = retrieved = n = 0
    with torch.no_grad():
        for f in files:
            v = torch.from_numpy(np.fromfile(os.path.join(d, 'val', f), dtype='<f4'))
            size = v.numel() // (2 * S * S)
            v = v.reshape(2, size, 1, S, S)
            k = F.normalize(teacher(v[1]), dim=1)
            q = F.normalize(student(v[0]), dim=1)
            loss, _ = info_nce(q, k, queue, tau, threshold)
            total += loss.item() * size
            retrieved += ((q @ k.t()).argmax(1) == torch.arange(size)).float().sum().item()
            n += size
    set_bn_momentum(student, 0.1)
    set_bn_momentum(teacher, 0.1)
    return dict(val_loss=total / n, val_retrieval=retrieved / n)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None, int(sys.argv[3]) if len(sys.argv) > 3 else None)
