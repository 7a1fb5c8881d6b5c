// Builds the platform-specific VSIX: the esbuild bundles, the runtime's native modules for the
// target platform only (onnxruntime-node's binaries for it, tokenizers' one .node file, and the JS
// and package.json files that load them), media/ and the README. vsce runs with --no-dependencies
// on a staging folder that holds exactly those files (vsce never packs a top-level node_modules in
// that mode, so the native modules sit in dist/node_modules, where Node finds them from
// dist/runtime/cli.js). Then it checks the result: the file list, and that the packaged runtime
// starts and generates from a fixture model, run from an unzipped copy outside the repository.
//
//   node scripts/package.mjs [--target linux-x64] [--out FILE.vsix] [--verify-model DIR] [--skip-verify]

import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { inflateRawSync } from 'node:zlib';

const root = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    target: { type: 'string', default: 'linux-x64' },
    out: { type: 'string' },
    'verify-model': { type: 'string' },
    'skip-verify': { type: 'boolean', default: false },
  },
});

/** Per VS Code target: onnxruntime-node's binary folder and tokenizers' binary. */
const TARGETS = {
  'linux-x64': { ort: 'linux/x64', tokenizers: 'tokenizers.linux-x64-gnu.node' },
  'linux-arm64': { ort: 'linux/arm64', tokenizers: 'tokenizers.linux-arm64-gnu.node' },
  'darwin-arm64': { ort: 'darwin/arm64', tokenizers: 'tokenizers.darwin-arm64.node' },
  'win32-x64': { ort: 'win32/x64', tokenizers: 'tokenizers.win32-x64-msvc.node' },
  'win32-arm64': { ort: 'win32/arm64', tokenizers: 'tokenizers.win32-arm64-msvc.node' },
};
const target = TARGETS[args.target];
if (!target) fail(`unknown --target ${args.target}; known: ${Object.keys(TARGETS).join(', ')}`);
const vsix = resolve(root, args.out ?? `opt-complete-${args.target}.vsix`);

// 1. Build.
run(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root });

// 2. Stage.
const stage = join(root, 'dist/vsix-stage');
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
const copy = (from, to = from) => {
  const src = join(root, from);
  if (!existsSync(src)) fail(`${from} is missing (run npm ci and the build first)`);
  mkdirSync(dirname(join(stage, to)), { recursive: true });
  cpSync(src, join(stage, to), { recursive: true });
};

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// The manifest without what only the repository needs (scripts, dependencies, the CLI's bin).
const { scripts: _s, dependencies: _d, devDependencies: _dd, bin: _b, ...manifest } = pkg;
writeFileSync(join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
copy('README.md');
copy('.vscodeignore');
copy('dist/extension/main.cjs');
copy('dist/runtime/cli.js');
copy('dist/runtime/engineWorker.js');
copy('media/icon.png');
copy('media/walkthrough');

const nm = (p) => join('node_modules', p);
const staged = (p) => join('dist/node_modules', p);
const jsFiles = (dir) => readdirSync(join(root, dir)).filter((f) => f.endsWith('.js'));
// onnxruntime-node: its CommonJS entry files and the binaries for this platform only.
copy(nm('onnxruntime-node/package.json'), staged('onnxruntime-node/package.json'));
for (const f of jsFiles(nm('onnxruntime-node/dist'))) copy(nm(`onnxruntime-node/dist/${f}`), staged(`onnxruntime-node/dist/${f}`));
const ortBin = readdirSync(join(root, nm('onnxruntime-node/bin'))).filter((d) => d.startsWith('napi-v'));
for (const napi of ortBin) {
  const dir = `onnxruntime-node/bin/${napi}/${target.ort}`;
  if (existsSync(join(root, nm(dir)))) copy(nm(dir), staged(dir));
}
// onnxruntime-common, which onnxruntime-node requires: its CommonJS build only.
copy(nm('onnxruntime-common/package.json'), staged('onnxruntime-common/package.json'));
copy(nm('onnxruntime-common/dist/cjs/package.json'), staged('onnxruntime-common/dist/cjs/package.json'));
for (const file of walk(join(root, nm('onnxruntime-common/dist/cjs'))).filter((f) => f.endsWith('.js'))) {
  const rel = relative(join(root, 'node_modules'), file);
  copy(nm(rel), staged(rel));
}
// tokenizers: its loader and this platform's binary.
for (const f of ['package.json', 'index.js', target.tokenizers]) copy(nm(`tokenizers/${f}`), staged(`tokenizers/${f}`));

// 3. Package.
rmSync(vsix, { force: true });
const vsce = join(root, 'node_modules/@vscode/vsce/vsce');
run(
  process.execPath,
  [vsce, 'package', '--no-dependencies', '--allow-missing-repository', '--skip-license', '--target', args.target, '--out', vsix],
  { cwd: stage },
);

// 4. Check the contents.
const entries = readZip(vsix);
const files = entries.map((e) => e.name).filter((n) => !n.endsWith('/'));
const inExtension = files.filter((f) => f.startsWith('extension/')).map((f) => f.slice('extension/'.length));
const allowed = [
  /^package\.json$/,
  /^readme\.md$/i,
  /^\.vscodeignore$/,
  /^dist\/extension\/main\.cjs$/,
  /^dist\/runtime\/(cli|engineWorker)\.js$/,
  /^dist\/node_modules\/(onnxruntime-node|onnxruntime-common|tokenizers)\//,
  /^media\/(icon\.png|walkthrough\/[\w-]+\.svg)$/,
];
const unexpected = inExtension.filter((f) => !allowed.some((re) => re.test(f)));
if (unexpected.length) fail(`unexpected files in the VSIX: ${unexpected.join(', ')}`);
const natives = inExtension.filter((f) => /\.(node|so(\.\d+)*|dylib|dll)$/.test(f));
const foreign = natives.filter((f) => !f.includes(`/${target.ort}/`) && !f.endsWith(target.tokenizers));
if (foreign.length) fail(`native files for another platform in the VSIX: ${foreign.join(', ')}`);
if (
  !inExtension.some((f) => f.endsWith(target.tokenizers)) ||
  !inExtension.some((f) => f.includes(`/${target.ort}/`) && f.endsWith('onnxruntime_binding.node'))
)
  fail('the native modules for the target are missing from the VSIX');
if (inExtension.some((f) => /\.(ts|map)$/.test(f))) fail('sources or source maps in the VSIX');

const groups = new Map();
for (const e of entries) {
  if (!e.name.startsWith('extension/')) continue;
  const f = e.name.slice('extension/'.length);
  const group = f.startsWith('dist/node_modules/') ? f.split('/').slice(0, 3).join('/') : f.startsWith('media/') ? 'media' : f;
  const g = groups.get(group) ?? { files: 0, bytes: 0 };
  g.files++;
  g.bytes += e.size;
  groups.set(group, g);
}
const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
console.log(
  `\n${relative(root, vsix)}: ${mib(statSync(vsix).size)} (${files.length} files, ${mib(entries.reduce((n, e) => n + e.size, 0))} unpacked)`,
);
for (const [group, g] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes))
  console.log(`  ${mib(g.bytes).padStart(10)}  ${String(g.files).padStart(3)} file${g.files === 1 ? ' ' : 's'}  ${group}`);

// 5. Check that the packaged runtime and extension load from an unzipped copy, outside the repository.
if (!args['skip-verify']) {
  const [platform, arch] = args.target.split('-');
  if (platform !== process.platform || arch !== process.arch) {
    console.log(`\nnot verifying: the VSIX is for ${args.target}, this machine is ${process.platform}-${process.arch}`);
  } else {
    const tmp = mkdtempSync(join(tmpdir(), 'opt-vsix-'));
    try {
      for (const e of entries) {
        if (e.name.endsWith('/')) continue;
        const out = join(tmp, e.name);
        mkdirSync(dirname(out), { recursive: true });
        writeFileSync(out, e.data());
      }
      const model = args['verify-model'] ? resolve(args['verify-model']) : fixtureModel();
      const ext = join(tmp, 'extension');
      const gen = spawnSync(
        process.execPath,
        [join(ext, 'dist/runtime/cli.js'), 'generate', '--model', model, 'hi', '--max-new-tokens', '3', '--cache-dir', join(tmp, 'cache')],
        { cwd: tmp, encoding: 'utf8', timeout: 120_000 },
      );
      if (gen.status !== 0) fail(`the packaged runtime failed (exit ${gen.status}):\n${gen.stderr}${gen.error ? String(gen.error) : ''}`);
      console.log(
        `\npackaged runtime: node extension/dist/runtime/cli.js generate --model ${relative(root, model) || model} "hi" --max-new-tokens 3\n  → ${JSON.stringify(gen.stdout.trim())}`,
      );
      // The extension bundle loads (with a stand-in for the editor's `vscode` module) and exports its entry points.
      const probe = `const M=require('module');const load=M._load;M._load=function(r,...a){return r==='vscode'?{}:load.call(this,r,...a)};const m=require(${JSON.stringify(join(ext, 'dist/extension/main.cjs'))});if(typeof m.activate!=='function'||typeof m.deactivate!=='function')process.exit(1)`;
      const load = spawnSync(process.execPath, ['-e', probe], { cwd: tmp, encoding: 'utf8' });
      if (load.status !== 0) fail(`the packaged extension bundle does not load:\n${load.stderr}`);
      console.log('packaged extension: dist/extension/main.cjs loads and exports activate/deactivate');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
}

/** The demo's fixture model (.cache/demo-model), written if missing: a tiny random OPT with real tokenizer files. */
function fixtureModel() {
  const dir = join(root, '.cache/demo-model');
  if (!existsSync(join(dir, 'config.json'))) {
    console.log(`writing a fixture model to ${relative(root, dir)}`);
    run(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        `import('./test/fixtures/optCheckpoint.ts').then((m) => m.writeOptCheckpoint(${JSON.stringify(dir)}, { preset: '125m-style', tokenizer: true }))`,
      ],
      { cwd: root },
    );
  }
  return dir;
}

function run(cmd, argv, options) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', ...options });
  if (r.status !== 0) fail(`${relative(root, argv[0]) || cmd} ${argv.slice(1).join(' ')} failed (exit ${r.status ?? r.signal})`);
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));
}

/** The entries of a zip file (stored or deflated), read from its central directory. */
function readZip(file) {
  const buf = readFileSync(file);
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  if (eocd < 0) fail(`${file} is not a zip file`);
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const entries = [];
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) fail(`${file}: bad central directory`);
    const method = buf.readUInt16LE(p + 10);
    const compressed = buf.readUInt32LE(p + 20);
    const size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    const data = () => {
      const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
      const raw = buf.subarray(start, start + compressed);
      if (method === 0) return raw;
      if (method === 8) return inflateRawSync(raw);
      fail(`${name}: unsupported zip method ${method}`);
    };
    entries.push({ name, size, data });
  }
  return entries;
}

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(1);
}
