// Builds the anatomy explorer into dist/viewer. The page reuses Eden's own model code
// (src/models, src/data/intensity, src/data/resize, src/anatomy); the Node-only native-kernel
// loader is swapped for a stub.
import { defineConfig } from 'vite';
import path from 'node:path';

const nativeLoader = path.resolve(import.meta.dirname, '..', 'src', 'engine', 'native.js');

export default defineConfig({
  root: import.meta.dirname,
  base: './',
  build: { outDir: path.resolve(import.meta.dirname, '..', 'dist', 'viewer'), emptyOutDir: true, chunkSizeWarningLimit: 4096 },
  plugins: [
    {
      name: 'eden-native-stub',
      enforce: 'pre',
      resolveId(source, importer) {
        // However it is imported ('../engine/native.js', './native.js').
        if (importer && source.endsWith('native.js') && path.resolve(path.dirname(importer), source) === nativeLoader) return path.resolve(import.meta.dirname, 'src', 'native-stub.ts');
        return null;
      },
    },
  ],
});
