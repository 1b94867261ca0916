import { decodeImageFile } from '../../src/data/decode.js';
for (const f of ['voc.png', 'rgb.png']) { const g = await decodeImageFile(`/tmp/pal/${f}`); console.log(f, g.bitDepth, [...new Set(g.data)]); }
