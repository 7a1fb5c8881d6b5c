// Bundles the runtime CLI with esbuild. Native packages (onnxruntime-node, tokenizers) stay
// external: they load their platform binaries at run time.
import { build } from 'esbuild';

await build({
  entryPoints: { 'runtime/cli': 'runtime/src/cli.ts' },
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  external: ['onnxruntime-node', 'tokenizers'],
  logLevel: 'info',
});
