// ESLint (flat config): eslint's and typescript-eslint's recommended rules, without type information
// (the whole repository lints in seconds), adjusted where this codebase differs on purpose; and the
// import boundaries between the three folders (README, Architecture) as errors, which
// test/protocol/boundaries.unit.test.ts proves fire.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const RUNTIME = 'runtime/ is a plain Node library and process: it never imports vscode or extension/ (shared types live in protocol/).';
const EXTENSION =
  'extension/ runs in VS Code and reaches the runtime only through protocol/ and its process: it never imports runtime/ or onnxruntime-node.';
const PROTOCOL = 'protocol/ is the leaf both sides depend on: it imports nothing from runtime/, extension/, vscode or onnxruntime-node.';
const ONNX = 'runtime/src/session.ts is the only importer of onnxruntime-node (README, Architecture).';

/**
 * The imports a folder may not make. `folders`: top-level folders, refused as any relative specifier
 * that climbs into them (`../../runtime/…`), whatever depth it starts from; no folder inside the three
 * is named like a top-level one, so this never refuses an import within a folder. `modules`: packages,
 * with their subpaths. typescript-eslint's version of no-restricted-imports also sees `import type`,
 * `export … from` and `import x = require()`.
 */
function boundary(rules) {
  const paths = [];
  const patterns = [];
  for (const { message, folders = [], modules = [] } of rules) {
    for (const folder of folders) patterns.push({ regex: `^(\\.{1,2}/)*\\.\\./${folder}(/|$)`, message });
    for (const name of modules) paths.push({ name, message });
    if (modules.length > 0) patterns.push({ group: modules.map((name) => `${name}/**`), message });
  }
  return { '@typescript-eslint/no-restricted-imports': ['error', { paths, patterns }] };
}

export default defineConfig(
  globalIgnores(['dist/', 'node_modules/', '.cache/', 'bench/out/', 'test-artifacts/', '**/*.d.ts']),
  {
    files: ['**/*.{ts,mts,js,mjs}'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // The code omits keys with a rest sibling (`const { seed: _seed, ...rest } = o`) and names a
      // parameter kept for a signature `_x`; tsc's noUnusedLocals and noUnusedParameters judge the rest.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { ignoreRestSiblings: true, argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      // Off: the code that escapes or checks untrusted text (JSON and error messages, header values,
      // file names) matches control characters on purpose, written out as \x00-\x1f.
      'no-control-regex': 'off',
      // `== null` ("null or undefined") is the one loose comparison.
      eqeqeq: ['error', 'smart'],
      // A type-only import says so (`import type`, or `type` on each name), as the code already does.
      // `typeof import('…')` in an annotation stays allowed: the benchmarks load optional packages lazily.
      '@typescript-eslint/consistent-type-imports': ['error', { disallowTypeAnnotations: false }],
    },
  },

  // The boundaries. A later block for the same file replaces the rule's options, so each block lists all
  // of its folder's restrictions.
  {
    files: ['protocol/**/*.ts'],
    rules: boundary([{ message: PROTOCOL, folders: ['runtime', 'extension'], modules: ['vscode', 'onnxruntime-node'] }]),
  },
  {
    files: ['runtime/**/*.ts'],
    rules: boundary([
      { message: RUNTIME, folders: ['extension'], modules: ['vscode'] },
      { message: ONNX, modules: ['onnxruntime-node'] },
    ]),
  },
  {
    files: ['runtime/src/session.ts'],
    rules: boundary([{ message: RUNTIME, folders: ['extension'], modules: ['vscode'] }]),
  },
  {
    files: ['extension/**/*.ts'],
    rules: boundary([{ message: EXTENSION, folders: ['runtime'], modules: ['onnxruntime-node'] }]),
  },
);
