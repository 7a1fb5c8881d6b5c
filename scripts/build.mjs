// Bundles the runtime (CLI and its inference worker) and the extension with esbuild. Native
// packages (onnxruntime-node, tokenizers) stay external: they load their platform binaries at run
// time; `vscode` is provided by the editor.
import { existsSync } from 'node:fs';
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', target: 'node20', sourcemap: true, logLevel: 'info' };

await build({
  ...common,
  entryPoints: { 'runtime/cli': 'runtime/src/cli.ts', 'runtime/engineWorker': 'runtime/src/engine/engineWorker.ts' },
  outdir: 'dist',
  format: 'esm',
  external: ['onnxruntime-node', 'tokenizers'],
  // CommonJS dependencies bundled into ESM may call require() for Node built-ins.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
});

if (existsSync('extension/src/main.ts')) {
  await build({
    ...common,
    entryPoints: { 'extension/main': 'extension/src/main.ts' },
    outdir: 'dist',
    // VS Code loads extensions as CommonJS; package.json says "type": "module", so the bundle is .cjs.
    format: 'cjs',
    outExtension: { '.js': '.cjs' },
    external: ['vscode'],
  });
}
