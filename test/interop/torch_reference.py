"""Builds PyTorch reference files for Eden's interop tests (run by test/interop.test.ts with
Debian's python3-torch): torchvision ResNets with random weights and random batch-norm statistics,
saved in several checkpoint layouts, and their pooled features on one radiograph, as JSON.

usage: torch_reference.py OUT_DIR IMAGE.png
"""
import json, sys, zlib, struct
import torch, torchvision


def read_png_grey(path):
    """Minimal 8-bit greyscale PNG reader (no PIL in Debian's torch install)."""
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, idat, w = 8, b'', None
    while pos < len(data):
        n, kind = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
        if kind == b'IHDR':
            w, h, depth, ctype = struct.unpack('>IIBB', body[:10]); assert depth == 8 and ctype == 0, 'grey 8-bit only'
        elif kind == b'IDAT':
            idat += body
    raw = zlib.decompress(idat); rows, prev = [], bytearray(w)
    for y in range(h):
        f, line = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0; b = prev[x]; c = prev[x - 1] if x else 0
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = [0, a, b, (a + b) // 2, a if pa <= pb and pa <= pc else (b if pb <= pc else c)][f]
            line[x] = (line[x] + pred) & 255
        rows.append(bytes(line)); prev = line
    return torch.tensor(list(b''.join(rows)), dtype=torch.float32).reshape(1, 1, h, w) / 255

def randomise(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3); m.running_var.uniform_(0.5, 2.0)
    return model.eval()

def backbone(arch, in_ch):
    m = getattr(torchvision.models, arch)(weights=None)
    if in_ch == 1:
        m.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return randomise(m)

def pooled(model, x):
    with torch.no_grad():
        body = torch.nn.Sequential(*list(model.children())[:-1])  # up to the average pool
        return body(x).flatten(1)[0].tolist()

def main(out, image_path):
    torch.manual_seed(0)
    x = read_png_grey(image_path)
    ref = {}
    for arch in ['resnet18', 'resnet50']:
        m = backbone(arch, 1)
        torch.save(m.state_dict(), f'{out}/{arch}.pth')
        ref[arch] = pooled(m, x)
    # A MoCo-v2 training checkpoint: 3-channel query encoder with an MLP head, key encoder and queue.
    m = backbone('resnet18', 3)
    d = m.fc.in_features
    m.fc = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, 128))
    state = {f'module.encoder_q.{k}': v for k, v in m.state_dict().items()}
    state.update({f'module.encoder_k.{k}': v.clone() for k, v in m.state_dict().items()})
    state['module.queue'] = torch.randn(128, 64)
    state['module.queue_ptr'] = torch.zeros(1, dtype=torch.long)
    torch.save({'epoch': 200, 'arch': 'resnet18', 'state_dict': state, 'optimizer': {'state': {}, 'param_groups': [{'lr': 0.03}]}}, f'{out}/moco.pth.tar')
    ref['moco'] = pooled(m, x.repeat(1, 3, 1, 1))  # the grey image on R, G and B
    with torch.no_grad():
        ref['moco_projection'] = m.fc(torch.tensor([ref['moco']])).tolist()[0]
    # float16 and bfloat16 storages.
    h = backbone('resnet18', 1)
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in h.state_dict().items()}, f'{out}/resnet18_fp16.pth')
    torch.save({k: (v.bfloat16() if v.is_floating_point() else v) for k, v in h.state_dict().items()}, f'{out}/resnet18_bf16.pth')
    with torch.no_grad():
        for dt, name in [(torch.float16, 'fp16'), (torch.bfloat16, 'bf16')]:
            hh = backbone('resnet18', 1); hh.load_state_dict({k: (v.to(dt).float() if v.is_floating_point() else v) for k, v in h.state_dict().items()})
            ref[f'resnet18_{name}'] = pooled(hh.eval(), x)
    json.dump(ref, open(f'{out}/reference.json', 'w'))
    # A pickle that names a global it must not run.
    import pickle, io, zipfile
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ('echo pwned',))
    buf = io.BytesIO(); torch.save({'conv1.weight': torch.zeros(1), 'x': Evil()}, buf)
    open(f'{out}/evil.pth', 'wb').write(buf.getvalue())
    print('ok')


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
