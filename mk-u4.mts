import sharp from 'sharp';
import { readdirSync } from 'node:fs';
import { decodeImageFile } from './src/data/decode.js';
import { binarizeMask, decodedMaskRange, labelValueMask } from './src/data/dataset.js';
const src = '/work/shared/data/wingspan_ctr';
const structs = ['heart', 'left_lung', 'right_lung'];
const files = readdirSync(`${src}/images`).sort().slice(0, 20);
for (const q of [50, 95]) for (const sub of ['4:2:0']) for (const kind of ['white', 'red', 'rgb3', 'pastel3', 'one']) {
  let wrong = 0, ref = 0, refused = 0, values = new Set<string>();
  for (const f of files) {
    const ms = [];
    for (const s of structs) ms.push((await sharp(`${src}/masks/${s}/${f}`).extractChannel(0).raw().toBuffer({ resolveWithObject: true })));
    const { width, height } = ms[0]!.info;
    const cols = kind === 'one' ? [[1,1,1]] : kind === 'white' ? [[255,255,255]] : kind === 'red' ? [[255,0,0]] : kind === 'rgb3' ? [[255,0,0],[0,255,0],[0,0,255]] : [[255,150,150],[150,255,150],[150,150,255]];
    const rgb = Buffer.alloc(width * height * 3);
    cols.forEach((c, k) => ms[k]!.data.forEach((v, i) => { if (v > 127) { rgb[3*i] = c[0]!; rgb[3*i+1] = c[1]!; rgb[3*i+2] = c[2]!; } }));
    const file = `/tmp/u4.jpg`;
    await sharp(rgb, { raw: { width, height, channels: 3 } }).jpeg({ quality: q, chromaSubsampling: sub }).toFile(file);
    try {
      const m = await decodeImageFile(file, { mask: true });
      const vals = new Set(m.data); values.add([...vals].sort((a,b)=>a-b).join('/'));
      cols.forEach((c, k) => {
        const luma = Math.round(0.299*c[0]! + 0.587*c[1]! + 0.114*c[2]!);
        const b = cols.length === 1 ? binarizeMask(m.data, m.bitDepth, decodedMaskRange(m).threshold) : labelValueMask(m.data, luma);
        ms[k]!.data.forEach((v, i) => { const r = v > 127 ? 1 : 0; ref += r; if (r !== (b[i]! > 0.5 ? 1 : 0)) wrong++; });
      });
    } catch (e) { refused++; if (refused === 1) console.log(String(e).slice(0, 200)); }
  }
  console.log(`q${q} ${sub} ${kind}: wrong ${wrong} of ${ref} (${(100*wrong/ref).toFixed(2)}%), refused ${refused}, values ${[...values].slice(0,3).join(' | ')}`);
}
