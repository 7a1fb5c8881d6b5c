// The extension's manifest and boundaries: package.json declares exactly the commands and
// settings the code uses, each with a default the code's reading rule accepts (package.json is
// where defaults are written; config.ts has none of its own), menus, keybindings and the walkthrough
// refer to things that exist, the icon is a 128×128 PNG, and the import layering holds: the
// bundle pulls in no native module and no runtime code beyond the pure engine contract, and the
// modules that say "No vscode import" have none.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { build } from 'esbuild';
import { Commands, ContextKeys } from '../../extension/src/commandIds.js';
import { DEFAULT_TEMPLATES } from '../../extension/src/rewrite/rewriteTemplates.js';
import { HOT_SETTINGS, RESTART_SETTINGS, SECTION, SETTING_RULES, type SettingKey, type SettingRule } from '../../extension/src/settings.js';

const repo = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
const contributes = pkg.contributes;
const properties: Record<string, { type?: unknown; default?: unknown; enum?: unknown[] }> = contributes.configuration.properties;

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));
}

describe('manifest', () => {
  test('entry point, module type, activation and engine', () => {
    assert.equal(pkg.main, './dist/extension/main.cjs');
    assert.equal(pkg.type, 'module', 'the runtime bundle is ESM .js; the extension bundle is .cjs because of this');
    assert.deepEqual(pkg.activationEvents, ['onStartupFinished']);
    assert.equal(pkg.engines.vscode, '^1.90.0');
    assert.ok(pkg.publisher && pkg.displayName && pkg.icon);
    assert.deepEqual(pkg.extensionKind, ['workspace'], 'the runtime must run where the files are');
  });

  test('contributes exactly the commands in commandIds.ts', () => {
    const declared = contributes.commands.map((c: { command: string }) => c.command).sort();
    assert.deepEqual(declared, Object.values(Commands).sort());
    for (const c of contributes.commands) assert.equal(c.category, 'OPT', c.command);
  });

  test('menus and keybindings refer to declared commands; when clauses use our context keys', () => {
    const ids = new Set<string>(Object.values(Commands));
    const keys = new Set<string>(Object.values(ContextKeys));
    for (const [menu, items] of Object.entries(contributes.menus as Record<string, { command: string; when?: string }[]>)) {
      for (const item of items) {
        assert.ok(ids.has(item.command), `${menu}: ${item.command}`);
        for (const key of item.when?.match(/optComplete\.\w+/g) ?? []) assert.ok(keys.has(key), `${menu}: unknown context key ${key}`);
      }
    }
    for (const k of contributes.keybindings) assert.ok(ids.has(k.command), k.command);
  });

  test('declares exactly the settings in settings.ts, each with a description', () => {
    const declared = Object.keys(properties).sort();
    const code = [...RESTART_SETTINGS, ...HOT_SETTINGS].map((k) => `${SECTION}.${k}`).sort();
    assert.deepEqual(declared, code);
    for (const [key, p] of Object.entries(properties))
      assert.ok(
        (p as { description?: string; markdownDescription?: string }).description ||
          (p as { markdownDescription?: string }).markdownDescription,
        key,
      );
  });

  test('every setting config.ts reads has a rule, and package.json a default of the type that rule reads', () => {
    const rules = Object.entries(SETTING_RULES) as [SettingKey, SettingRule<unknown>][];
    assert.deepEqual(rules.map(([k]) => k).sort(), [...RESTART_SETTINGS, ...HOT_SETTINGS].sort());
    for (const [k, rule] of rules) {
      const p = properties[`${SECTION}.${k}`];
      assert.ok(p && 'default' in p, `${k} is declared with a default`);
      assert.deepEqual(p.type, rule.json, `${k}: package.json's type`);
      if (p.default === null) assert.ok(rule.nullable, `${k}: a null default is only for a nullable setting`);
      else assert.ok(rule.accepts(p.default), `${k}: the rule accepts the default ${JSON.stringify(p.default)}`);
      if (rule.enum) assert.deepEqual(p.enum, rule.enum, `${k}: enum`);
      else assert.equal(p.enum, undefined, `${k}: an enum in package.json needs one in the rule`);
      if (typeof p.default === 'number') {
        // Read as-is: in range, and an integer setting's default is whole.
        assert.ok(p.default >= rule.min! && p.default <= rule.max!, `${k}: ${p.default} within [${rule.min}, ${rule.max}]`);
        if (p.type === 'integer') assert.ok(Number.isInteger(p.default), k);
      } else if (p.default !== null) assert.ok(rule.min === undefined && rule.max === undefined, `${k}: a range only for a number`);
    }
  });

  test("the defaults are the product's", () => {
    const d = (k: string) => properties[`${SECTION}.${k}`]!.default;
    assert.equal(d('engine'), 'local');
    assert.equal(d('model'), 'facebook/opt-125m');
    assert.equal(d('device'), 'auto');
    assert.equal(d('dtype'), 'auto');
    assert.equal(d('inline.debounceMs'), 75);
    assert.equal(d('inline.wordEndDebounceMs'), 0);
    assert.equal(d('inline.multiline'), 'auto');
    assert.equal(d('runtime.startup'), 'onDemand');
    assert.equal(d('runtime.prefixCacheMiB'), null, 'automatic: the runtime sizes it for the model and the machine');
    assert.deepEqual(d('rewrite.templates'), DEFAULT_TEMPLATES, 'the settings default is the built-in template list');
    assert.deepEqual(properties[`${SECTION}.device`]!.enum, ['auto', 'cpu', 'webgpu', 'cuda']);
    assert.deepEqual(properties[`${SECTION}.dtype`]!.enum, ['auto', 'int8', 'int4', 'fp16', 'fp32']);
    for (const [k, v] of [
      ['inline.maxNewTokens', 48],
      ['inline.maxContextChars', 4000],
      ['inline.maxContextTokens', 768],
      ['inline.maxLines', 8],
      ['generation.maxNewTokens', 128],
      ['rewrite.maxNewTokens', 512],
    ] as const) {
      assert.equal(d(k), v, k);
    }
  });

  test('the walkthrough leads to a first completion, with pictures that exist', () => {
    const [walkthrough] = contributes.walkthroughs;
    assert.deepEqual(
      walkthrough.steps.map((s: { id: string }) => s.id),
      ['pickModel', 'waitReady', 'typeText', 'acceptTab'],
    );
    const ids = new Set<string>(Object.values(Commands));
    const keys = new Set<string>(Object.values(ContextKeys));
    for (const step of walkthrough.steps) {
      assert.ok(existsSync(join(repo, step.media.image)), step.media.image);
      assert.ok(step.media.altText, step.id);
      for (const link of step.description.match(/command:[\w.]+/g) ?? []) assert.ok(ids.has(link.slice('command:'.length)), link);
      for (const event of step.completionEvents) {
        const [kind, arg] = event.split(/:(.*)/);
        if (kind === 'onCommand') assert.ok(ids.has(arg), event);
        else if (kind === 'onContext') assert.ok(keys.has(arg), event);
        else if (kind === 'onSettingChanged') assert.ok(arg in properties, event);
        else assert.fail(`unexpected completion event ${event}`);
      }
    }
  });

  test('the icon is a 128×128 PNG', () => {
    const png = readFileSync(join(repo, pkg.icon));
    assert.equal(png.toString('latin1', 1, 4), 'PNG');
    assert.equal(png.readUInt32BE(16), 128);
    assert.equal(png.readUInt32BE(20), 128);
  });

  test('.vscodeignore lets in only bundles, staged native modules, media and the README', () => {
    const lines = readFileSync(join(repo, '.vscodeignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    assert.equal(lines[0], '**');
    for (const l of lines.slice(1))
      assert.match(l, /^!(package\.json|README\.md|dist\/(extension|runtime|node_modules)\/.+|media\/.+)$/, l);
  });
});

describe('import boundaries', () => {
  test('the extension bundle pulls in no native module and no runtime code (the shared contract is protocol/)', async () => {
    const result = await build({
      entryPoints: [join(repo, 'extension/src/main.ts')],
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'cjs',
      external: ['vscode'],
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);
    assert.equal(inputs.filter((f) => /onnxruntime|node_modules\/tokenizers\//.test(f)).length, 0);
    const runtime = inputs.filter((f) => f.startsWith('runtime/')).sort();
    assert.deepEqual(runtime, []);
    assert.ok(inputs.includes('protocol/protocol.ts') && inputs.includes('protocol/errors.ts'), 'the editor speaks the protocol module');
    const natives = Object.values(result.metafile.inputs)
      .flatMap((i) => i.imports)
      .filter(
        (i) =>
          i.external && i.path !== 'vscode' && !i.path.startsWith('node:') && !/^(fs|path|os|net|crypto|util|child_process)$/.test(i.path),
      );
    assert.deepEqual(natives, []);
  });

  test('modules that say they have no vscode import have none (so the unit tests can load them)', () => {
    const files = walk(join(repo, 'extension/src')).filter((f) => f.endsWith('.ts'));
    const pure = files.filter((f) => /no vscode import/i.test(readFileSync(f, 'utf8')));
    assert.ok(pure.length >= 15, `pure modules: ${pure.map((f) => relative(repo, f)).join(', ')}`);
    for (const f of pure) assert.doesNotMatch(readFileSync(f, 'utf8'), /from 'vscode'|require\('vscode'\)/, relative(repo, f));
    // Only these talk to VS Code; everything they import from completion/, engines/, models/ is pure.
    for (const dir of ['completion', 'engines', 'models']) {
      for (const f of files.filter((x) => x.includes(`/extension/src/${dir}/`)))
        assert.ok(pure.includes(f), `${relative(repo, f)} should be vscode-free`);
    }
  });

  test('only config.ts reads the configuration', () => {
    const readers = walk(join(repo, 'extension/src')).filter(
      (f) => f.endsWith('.ts') && /getConfiguration\(/.test(readFileSync(f, 'utf8')),
    );
    assert.deepEqual(
      readers.map((f) => relative(repo, f)),
      ['extension/src/config.ts'],
    );
  });
});
