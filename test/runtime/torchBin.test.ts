// pytorch_model.bin reading: round trips through the fixture writer, an independent check of the
// writer's zip and pickle against CPython's zipfile/pickle (with torch stood in for by stubs),
// ZIP64, and every refusal: code-running globals, truncation, compression, legacy and foreign files.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CheckpointError } from '../../runtime/src/errors.js';
import type { PyTuple } from '../../runtime/src/checkpoint/pickle.js';
import { PyCall, PyDict, unpickle } from '../../runtime/src/checkpoint/pickle.js';
import type { TensorRef } from '../../runtime/src/checkpoint/tensorRef.js';
import { readTorchBin } from '../../runtime/src/checkpoint/torchBin.js';
import {
  Pickler,
  type TorchBinOptions,
  type TorchBinTensor,
  writeMaliciousTorchBin,
  writeTorchBin,
  writeTorchBinRecords,
} from '../fixtures/torchBinWriter.js';

const hasPython = spawnSync('python3', ['-c', 'import zipfile, pickle, pickletools']).status === 0;
const noPython = hasPython ? false : 'python3 is not available';

function python(script: string, ...args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

let dir: string;
let n = 0;
const path = (name = 'pytorch_model.bin'): string => join(dir, `${n++}-${name}`);
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'torchbin-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ITEM = { F32: 4, F16: 2, BF16: 2 } as const;
let seed = 1;
function tensor(name: string, dtype: TorchBinTensor['dtype'], shape: number[]): TorchBinTensor {
  const data = new Uint8Array(shape.reduce((a, b) => a * b, 1) * ITEM[dtype]);
  for (let i = 0; i < data.length; i++) data[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  return { name, dtype, shape, data };
}

async function bytesAt(ref: TensorRef): Promise<Uint8Array> {
  const fh = await open(ref.file, 'r');
  try {
    const buf = Buffer.alloc(ref.length);
    await fh.read(buf, 0, ref.length, ref.offset);
    return new Uint8Array(buf);
  } finally {
    await fh.close();
  }
}

/** Writes, reads back and checks every tensor's name, dtype, shape and bytes. */
async function roundTrip(tensors: TorchBinTensor[], options?: TorchBinOptions): Promise<{ file: string; refs: TensorRef[] }> {
  const file = path();
  await writeTorchBin(file, tensors, options);
  const refs = await readTorchBin(file);
  assert.deepEqual(
    refs.map((r) => r.name),
    tensors.map((t) => t.name),
  );
  for (const [i, ref] of refs.entries()) {
    const t = tensors[i]!;
    assert.equal(ref.dtype, t.dtype);
    assert.deepEqual(ref.shape, t.shape);
    assert.equal(ref.file, file);
    assert.equal(ref.length, t.data.byteLength);
    assert.deepEqual(await bytesAt(ref), t.data, t.name);
  }
  return { file, refs };
}

async function rejects(file: string, pattern: RegExp): Promise<CheckpointError> {
  let caught: unknown;
  await readTorchBin(file).catch((e: unknown) => {
    caught = e;
  });
  assert.ok(caught instanceof CheckpointError, `expected a CheckpointError, got ${String(caught)}`);
  assert.match(caught.message, pattern);
  assert.equal(caught.file, file);
  return caught;
}

const OPT_LIKE = (): TorchBinTensor[] => [
  tensor('model.decoder.embed_tokens.weight', 'F32', [11, 8]),
  tensor('model.decoder.embed_positions.weight', 'F32', [6, 8]),
  tensor('model.decoder.layers.0.self_attn.k_proj.weight', 'F32', [8, 8]),
  tensor('model.decoder.layers.0.self_attn.k_proj.bias', 'F32', [8]),
  tensor('model.decoder.layers.0.fc1.weight', 'F32', [16, 1, 8]),
  tensor('scalar', 'F32', []),
];

describe('readTorchBin round trip', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    test(`${dtype} tensors come back byte for byte, 64-byte aligned`, async () => {
      const tensors = OPT_LIKE().map((t) => tensor(t.name, dtype, t.shape));
      const { refs } = await roundTrip(tensors);
      for (const ref of refs) assert.equal(ref.offset % 64, 0, `${ref.name} at ${ref.offset}`);
    });
  }

  test('mixed dtypes, a plain dict container and an empty tensor', async () => {
    await roundTrip([tensor('a.weight', 'BF16', [3, 2]), tensor('b', 'F16', [0, 4]), tensor('c', 'F32', [5])], { container: 'dict' });
  });

  test('tied tensors share one storage and one byte range', async () => {
    const embed = tensor('model.decoder.embed_tokens.weight', 'F16', [7, 4]);
    const tensors = [embed, tensor('model.decoder.final_layer_norm.weight', 'F16', [4]), { ...embed, name: 'lm_head.weight' }];
    const { file, refs } = await roundTrip(tensors, { tieTo: { 'lm_head.weight': embed.name } });
    assert.equal(refs[2]!.offset, refs[0]!.offset);
    if (hasPython) {
      const names = JSON.parse(
        python('import zipfile,sys,json; print(json.dumps(zipfile.ZipFile(sys.argv[1]).namelist()))', file),
      ) as string[];
      assert.deepEqual(
        names.filter((x) => x.includes('/data/')),
        ['archive/data/0', 'archive/data/1'],
      );
    }
  });

  test('a tied tensor listed before its storage owner', async () => {
    const embed = tensor('embed', 'F32', [3, 2]);
    const { refs } = await roundTrip([{ ...embed, name: 'head' }, embed], { tieTo: { head: 'embed' } });
    assert.equal(refs[0]!.offset, refs[1]!.offset);
  });

  test('a non-default archive prefix', async () => {
    await roundTrip(OPT_LIKE(), { archiveName: 'pytorch_model' });
  });

  test('1100 tensors: SETITEMS batches, LONG_BINPUT memo keys, storage keys past 9', async () => {
    const tensors = Array.from({ length: 1100 }, (_, i) => tensor(`layers.${i}.weight`, i % 2 ? 'F16' : 'F32', [(i % 3) + 1]));
    await roundTrip(tensors);
  });

  test('views at storage offsets map to the right bytes', async () => {
    const storage = tensor('qkv', 'F16', [3, 4]);
    const p = new Pickler();
    p.proto();
    p.emptyDict();
    p.setItems(['q', 'k', 'v'], (name) => {
      const i = ['q', 'k', 'v'].indexOf(name);
      p.str(name);
      p.tensor('HalfStorage', '0', 12, [4], { offset: 4 * i });
    });
    p.stop();
    const file = path();
    await writeTorchBinRecords(file, [
      { name: 'data.pkl', data: p.bytes() },
      { name: 'data/0', data: storage.data },
    ]);
    const refs = await readTorchBin(file);
    for (const [i, ref] of refs.entries()) assert.deepEqual(await bytesAt(ref), storage.data.subarray(8 * i, 8 * i + 8));
  });

  test('a parameter (torch.nn.Parameter pickled via _rebuild_parameter) is its tensor', async () => {
    const w = tensor('w', 'F32', [2, 2]);
    const p = new Pickler();
    p.proto();
    p.emptyDict();
    p.str('w');
    p.call('torch._utils', '_rebuild_parameter', () =>
      p.tuple([
        () => p.tensor('FloatStorage', '0', 4, [2, 2]),
        () => p.op(0x88),
        () => p.call('collections', 'OrderedDict', () => p.emptyTuple()),
      ]),
    );
    p.op(0x73, 0x2e);
    const file = path();
    await writeTorchBinRecords(file, [
      { name: 'data.pkl', data: p.bytes() },
      { name: 'data/0', data: w.data },
    ]);
    const [ref] = await readTorchBin(file);
    assert.deepEqual([ref!.name, ref!.shape], ['w', [2, 2]]);
    assert.deepEqual(await bytesAt(ref!), w.data);
  });
});

// CPython's pickler, driven by stubs of torch's classes and the persistent_id logic of torch._save,
// must produce the very bytes the fixture writer produced; the zip must pass zipfile's CRC checks.
const TORCH_EMULATION = String.raw`
import sys, json, types, pickle, pickletools, collections, zipfile, struct, io
path, spec = sys.argv[1], json.loads(sys.argv[2])
torch, utils = types.ModuleType('torch'), types.ModuleType('torch._utils')
torch._utils = utils
sys.modules.update({'torch': torch, 'torch._utils': utils})
def _rebuild_tensor_v2(*args): raise AssertionError('never called')
_rebuild_tensor_v2.__module__ = 'torch._utils'
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
classes = {}
for dtype, name in (('F32', 'FloatStorage'), ('F16', 'HalfStorage'), ('BF16', 'BFloat16Storage')):
    classes[dtype] = type(name, (), {'__module__': 'torch'})
    setattr(torch, name, classes[dtype])
class Storage:
    def __init__(self, cls, numel): self.cls, self.numel = cls, numel
class Tensor:
    def __init__(self, storage, shape): self.storage, self.shape = storage, shape
    def __reduce_ex__(self, proto):
        stride, s = [], 1
        for d in reversed(self.shape): stride.insert(0, s); s *= max(d, 1)
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))
id_map = {}
class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            key = id_map.setdefault(id(obj), str(len(id_map)))
            return ('storage', obj.cls, key, 'cpu', obj.numel)
        return None
storages = {}
sd = collections.OrderedDict() if spec['container'] == 'OrderedDict' else {}
for t in spec['tensors']:
    if t['owner'] not in storages: storages[t['owner']] = Storage(classes[t['dtype']], t['ownerNumel'])
    sd[t['name']] = Tensor(storages[t['owner']], t['shape'])
if spec['container'] == 'OrderedDict':
    sd._metadata = collections.OrderedDict()
    sd._metadata[''] = dict(version=1)
    for t in spec['tensors']:
        parts = t['name'].split('.')[:-1]
        for i in range(len(parts)):
            prefix = '.'.join(parts[:i + 1])
            if prefix not in sd._metadata: sd._metadata[prefix] = dict(version=1)
buf = io.BytesIO()
TorchPickler(buf, protocol=2).dump(sd)
zf = zipfile.ZipFile(path)
archive = spec['archive']
actual = zf.read(archive + '/data.pkl')
pickletools.dis(actual, out=io.StringIO())
raw = open(path, 'rb').read()
layout = []
for info in zf.infolist():
    sig, _, flags, method, _, _, _, _, _, nlen, xlen = struct.unpack_from('<IHHHHHIIIHH', raw, info.header_offset)
    layout.append({'name': info.filename, 'aligned': (info.header_offset + 30 + nlen + xlen) % 64 == 0,
                   'flags': flags, 'method': method, 'extra': raw[info.header_offset + 30 + nlen:][:2].decode('latin1')})
print(json.dumps({'pickleEqual': actual == buf.getvalue(), 'testzip': zf.testzip(), 'layout': layout,
                  'version': zf.read(archive + '/version').decode(), 'byteorder': zf.read(archive + '/byteorder').decode()}))
`;

describe('the fixture writer matches torch.save, checked by CPython', { skip: noPython }, () => {
  const cases: [string, TorchBinTensor[], TorchBinOptions][] = [];
  const embed = tensor('model.decoder.embed_tokens.weight', 'F16', [5, 4]);
  cases.push([
    'an OrderedDict state dict with tied weights',
    [
      embed,
      tensor('model.decoder.layers.0.fc2.bias', 'F16', [4]),
      tensor('model.decoder.layers.0.fc2.weight', 'BF16', [4, 1]),
      tensor('x', 'F32', []),
      { ...embed, name: 'lm_head.weight' },
    ],
    { tieTo: { 'lm_head.weight': embed.name } },
  ]);
  cases.push(['a plain dict under another archive name', OPT_LIKE(), { container: 'dict', archiveName: 'pytorch_model-00001-of-00002' }]);
  cases.push(['1100 tensors', Array.from({ length: 1100 }, (_, i) => tensor(`h.${i}.w`, 'F32', [1, i % 4])), {}]);
  for (const [label, tensors, options] of cases) {
    test(label, async () => {
      const file = path();
      await writeTorchBin(file, tensors, options);
      const byName = new Map(tensors.map((t) => [t.name, t]));
      const spec = {
        archive: options.archiveName ?? 'archive',
        container: options.container ?? 'OrderedDict',
        tensors: tensors.map((t) => {
          const owner = byName.get(options.tieTo?.[t.name] ?? t.name)!;
          return { name: t.name, dtype: t.dtype, shape: t.shape, owner: owner.name, ownerNumel: owner.data.byteLength / ITEM[owner.dtype] };
        }),
      };
      const out = JSON.parse(python(TORCH_EMULATION, file, JSON.stringify(spec))) as {
        pickleEqual: boolean;
        testzip: string | null;
        version: string;
        byteorder: string;
        layout: { name: string; aligned: boolean; flags: number; method: number; extra: string }[];
      };
      assert.equal(out.pickleEqual, true, 'data.pkl differs from what CPython pickles for the same state dict');
      assert.equal(out.testzip, null);
      assert.equal(out.version, '3\n');
      assert.equal(out.byteorder, 'little');
      const names = out.layout.map((l) => l.name.slice(spec.archive.length + 1));
      assert.deepEqual(names.slice(0, 2), ['data.pkl', 'byteorder']);
      assert.equal(names.at(-1), 'version');
      const keys = names.slice(2, -1);
      assert.deepEqual(keys, keys.map((k) => k).sort(), 'storages in sorted(str) order');
      for (const l of out.layout) assert.deepEqual([l.aligned, l.flags, l.method, l.extra], [true, 0x0808, 0, 'FB'], l.name);
      if (spawnSync('unzip', ['-v']).status === 0) assert.equal(spawnSync('unzip', ['-tq', file]).status, 0);
    });
  }

  test('our legacy magic is what torch < 1.6 wrote first: pickle.dump of the magic number', async () => {
    const head = python('import pickle,sys; sys.stdout.write(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)[:-1].hex())');
    assert.equal(head, '80028a0a6cfc9c46f9206aa85019');
  });
});

describe('readTorchBin ZIP64 archives (rewritten by CPython zipfile)', { skip: noPython }, () => {
  // Lowering zipfile.ZIP64_LIMIT makes CPython write genuine ZIP64 records for a small file:
  // -1 puts every size and offset in ZIP64 extra fields; 100 only the larger ones.
  const REZIP = String.raw`
import sys, zipfile
src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
zipfile.ZIP64_LIMIT = limit
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zout:
    for info in zin.infolist(): zout.writestr(info.filename, zin.read(info.filename))
raw = open(dst, 'rb').read()
print(b'PK\x06\x06' in raw and b'PK\x06\x07' in raw)
`;
  for (const limit of [-1, 100]) {
    test(`ZIP64 limit ${limit}`, async () => {
      const tensors = [...OPT_LIKE(), tensor('big', 'F32', [40])];
      const src = path();
      await writeTorchBin(src, tensors);
      const dst = path('zip64.bin');
      assert.equal(python(REZIP, src, dst, String(limit)).trim(), 'True');
      const refs = await readTorchBin(dst);
      assert.deepEqual(
        refs.map((r) => r.name),
        tensors.map((t) => t.name),
      );
      for (const [i, ref] of refs.entries()) assert.deepEqual(await bytesAt(ref), tensors[i]!.data);
    });
  }
});

describe('readTorchBin refuses', () => {
  for (const [global, opcode] of [
    ['os.system', 'GLOBAL'],
    ['builtins.eval', 'STACK_GLOBAL'],
    ['posix.system', 'GLOBAL'],
    ['subprocess.Popen', 'STACK_GLOBAL'],
    ['__builtin__.getattr', 'GLOBAL'],
    ['torch._utils.__dict__', 'GLOBAL'],
  ] as const) {
    test(`a pickle calling ${global} (${opcode})`, async () => {
      const file = path();
      await writeMaliciousTorchBin(file, global, { opcode });
      const e = await rejects(file, /could run code/);
      assert.ok(e.problem.includes(global), e.problem);
    });
  }

  test('a dotted global name that aliases an allowed one', async () => {
    const p = new Pickler();
    p.proto(4);
    p.str('torch');
    p.str('_utils._rebuild_tensor_v2');
    p.op(0x93, 0x2e);
    assert.throws(() => unpickle(p.bytes(), 'x.bin'), /torch\._utils\._rebuild_tensor_v2.*could run code/);
  });

  test('a zip cut in half', async () => {
    const file = path();
    await writeTorchBin(file, OPT_LIKE());
    const size = (await readFile(file)).length;
    await truncate(file, Math.floor(size / 2));
    const e = await rejects(file, /truncated|incomplete/);
    assert.match(e.hint ?? '', /re-download/);
  });

  test('a storage entry too small for its tensor', async () => {
    const file = path();
    await writeTorchBin(file, OPT_LIKE());
    // Shrink the sizes recorded for archive/data/0 in the central directory.
    const raw = await readFile(file);
    let p = raw.readUInt32LE(raw.length - 22 + 16);
    while (raw.toString('latin1', p + 46, p + 46 + raw.readUInt16LE(p + 28)) !== 'archive/data/0') {
      p += 46 + raw.readUInt16LE(p + 28) + raw.readUInt16LE(p + 30) + raw.readUInt16LE(p + 32);
    }
    raw.writeUInt32LE(8, p + 20);
    raw.writeUInt32LE(8, p + 24);
    await writeFile(file, raw);
    await rejects(file, /model\.decoder\.embed_tokens\.weight.*holds only 8/);
  });

  test('a compressed storage entry', { skip: noPython }, async () => {
    const file = path();
    await writeTorchBin(file, OPT_LIKE());
    const dst = path('deflated.bin');
    python(
      String.raw`
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zin, zipfile.ZipFile(sys.argv[2], 'w') as zout:
    for i in zin.infolist():
        zout.writestr(i.filename, zin.read(i.filename), zipfile.ZIP_DEFLATED if i.filename.endswith('data/0') else zipfile.ZIP_STORED)
`,
      file,
      dst,
    );
    await rejects(dst, /archive\/data\/0 is compressed/);
  });

  test('the legacy (pre-1.6) format', async () => {
    const file = path();
    await writeFile(file, Buffer.concat([Buffer.from('80028a0a6cfc9c46f9206aa850192e', 'hex'), Buffer.alloc(64)]));
    const e = await rejects(file, /legacy/);
    assert.match(e.hint ?? '', /safetensors/);
  });

  test('files that are not checkpoints', async () => {
    const text = path('notes.txt');
    await writeFile(text, 'hello, this is not a model\n');
    await rejects(text, /not a PyTorch checkpoint/);
    const safetensors = path('model.safetensors');
    await writeFile(safetensors, Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]));
    await rejects(safetensors, /not a PyTorch checkpoint/);
    const empty = path('empty.bin');
    await writeFile(empty, '');
    await rejects(empty, /empty/);
  });

  test('a zip without data.pkl', async () => {
    const file = path();
    await writeTorchBinRecords(file, [{ name: 'constants.pkl', data: new Uint8Array([0x80, 2, 0x4e, 0x2e]) }]);
    await rejects(file, /no <archive>\/data\.pkl/);
  });

  test('a non-contiguous tensor, naming it', async () => {
    const p = new Pickler();
    p.proto();
    p.emptyDict();
    p.str('transposed.weight');
    p.tensor('FloatStorage', '0', 6, [2, 3], { strides: [1, 2] });
    p.op(0x73, 0x2e);
    const file = path();
    await writeTorchBinRecords(file, [
      { name: 'data.pkl', data: p.bytes() },
      { name: 'data/0', data: new Uint8Array(24) },
    ]);
    await rejects(file, /transposed\.weight.*not contiguous/);
  });

  test('a tensor whose storage entry is missing', async () => {
    const p = new Pickler();
    p.proto();
    p.emptyDict();
    p.str('w');
    p.tensor('FloatStorage', '7', 6, [6]);
    p.op(0x73, 0x2e);
    const file = path();
    await writeTorchBinRecords(file, [{ name: 'data.pkl', data: p.bytes() }]);
    await rejects(file, /tensor w: its storage archive\/data\/7 is missing/);
  });

  test('a TorchScript archive', async () => {
    const file = path();
    await writeTorchBinRecords(file, [
      { name: 'data.pkl', data: new Uint8Array([0x80, 2, 0x7d, 0x2e]) },
      { name: 'constants.pkl', data: new Uint8Array([0x80, 2, 0x29, 0x2e]) },
    ]);
    await rejects(file, /TorchScript/);
  });

  test('a pickle that is not a dict', async () => {
    const file = path();
    await writeTorchBinRecords(file, [{ name: 'data.pkl', data: new Uint8Array([0x80, 2, 0x5d, 0x2e]) }]);
    await rejects(file, /does not hold a state dict/);
  });
});

describe('unpickle', () => {
  test('reads what CPython pickles with protocols 2 to 5', { skip: noPython }, () => {
    for (const protocol of [2, 3, 4, 5]) {
      const hex = python(`import pickle, collections, sys
# protocol 2 has no bytes opcode (CPython writes _codecs.encode calls), so bytes only from 3 on
by = [b'by', b'b' * 300] if ${protocol} >= 3 else []
d = collections.OrderedDict([('a', (1, -2, 300, 70000, -70000, 2**40, 2**70, -2**70, 1.5)), ('b', ['x' * 300, *by, None, True, False]), ('c', {'k': ('t',)})])
d['d'] = d['b']
sys.stdout.write(pickle.dumps(d, protocol=${protocol}).hex())`);
      const v = unpickle(Buffer.from(hex, 'hex'), 'x.bin');
      assert.ok(v instanceof PyDict);
      assert.deepEqual((v.get('a') as PyTuple).items, [1, -2, 300, 70000, -70000, 2 ** 40, 2n ** 70n, -(2n ** 70n), 1.5]);
      const b = v.get('b') as unknown[];
      const by = protocol >= 3 ? [new Uint8Array([98, 121]), new Uint8Array(300).fill(98)] : [];
      assert.deepEqual(b, ['x'.repeat(300), ...by, null, true, false]);
      assert.equal(v.get('d'), b, 'memoized objects keep their identity');
      assert.deepEqual(((v.get('c') as PyDict).get('k') as PyTuple).items, ['t']);
    }
  });

  test('records allowed calls without running them', () => {
    const p = new Pickler();
    p.proto();
    p.call('torch._utils', '_rebuild_parameter', () => p.tuple([() => p.int(5), () => p.op(0x88)]));
    p.stop();
    const v = unpickle(p.bytes(), 'x.bin');
    assert.ok(v instanceof PyCall);
    assert.equal(v.callee.qualifiedName, 'torch._utils._rebuild_parameter');
    assert.deepEqual(v.args, [5, true]);
  });

  const bad: [string, number[], RegExp][] = [
    ['an unknown opcode, named with its position', [0x80, 2, 0x4e, 0xff], /opcode 0xff.*at byte 3/],
    ['INST, which can call anything in protocol 0', [0x80, 2, 0x69, 0x6f, 0x73, 0x0a], /opcode 0x69 \('i'\)/],
    ['stack underflow', [0x80, 2, 0x52, 0x2e], /stack underflow/],
    ['popping through a MARK', [0x80, 2, 0x4e, 0x28, 0x85, 0x2e], /stack underflow/],
    ['a truncated string', [0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f, 0x61], /truncated/],
    ['a stream without STOP', [0x80, 2, 0x4e], /without STOP/],
    ['an unknown memo key', [0x80, 2, 0x68, 9, 0x2e], /memo key 9/],
    ['calling a non-global', [0x80, 2, 0x4e, 0x29, 0x52, 0x2e], /cannot call a None/],
    ['SETITEM on a list', [0x80, 2, 0x5d, 0x4e, 0x4e, 0x73, 0x2e], /cannot set items on a list/],
    ['a huge LONG4', [0x80, 2, 0x8b, 0, 0, 0, 1, ...new Array(64).fill(0)], /too large|truncated/],
    ['an empty stream', [], /without STOP/],
  ];
  for (const [label, bytes, pattern] of bad) {
    test(`rejects ${label}`, () => {
      assert.throws(
        () => unpickle(new Uint8Array(bytes), 'x.bin'),
        (e: unknown) => e instanceof CheckpointError && pattern.test(e.message),
      );
    });
  }
});
