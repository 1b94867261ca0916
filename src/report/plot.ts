/**
 * Plots as PNG without a browser: a Vega-Lite spec compiled to Vega, rendered to SVG, rasterised by
 * sharp (LIBRARIES.md).
 */
import sharp from 'sharp';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export async function renderVegaLite(spec: TopLevelSpec, scale = 2): Promise<Buffer> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG(scale);
  view.finalize();
  return sharp(Buffer.from(svg)).png().toBuffer();
}
