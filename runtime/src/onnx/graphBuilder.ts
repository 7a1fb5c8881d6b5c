// A small typed layer over the ONNX protobuf (`onnx-proto`): declare inputs and outputs, add
// nodes, and stream weight initializers into an external-data file as they are produced, so a
// converter never holds more than one tensor's bytes and models over 2 GB stay valid ONNX.

import { type FileHandle, open } from 'node:fs/promises';
import { basename } from 'node:path';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type ElemType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'int8' | 'bool';

const DATA_TYPE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  uint8: onnx.TensorProto.DataType.UINT8,
  int8: onnx.TensorProto.DataType.INT8,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** A dimension: a fixed size or a symbolic name such as 'batch'. */
export type Dim = number | string;

/** Node attributes: plain numbers are INTs; floats must be wrapped so 1.0 stays a float. */
export type AttrValue = number | string | number[] | { float: number } | { floats: number[] };
export const float = (v: number): { float: number } => ({ float: v });

type TypedArray = Float32Array | Uint16Array | Uint8Array | Int8Array | Int32Array | BigInt64Array;

/** Appends tensor bytes to the `.onnx.data` file. Large tensors are page-aligned so onnxruntime can mmap them. */
export class ExternalDataFile {
  private _offset = 0;
  private constructor(
    private readonly _fh: FileHandle,
    readonly path: string,
  ) {}

  static async create(path: string): Promise<ExternalDataFile> {
    return new ExternalDataFile(await open(path, 'w'), path);
  }

  async append(bytes: Uint8Array): Promise<{ offset: number; length: number }> {
    const align = bytes.byteLength >= 65536 ? 4096 : 64;
    const pad = (align - (this._offset % align)) % align;
    if (pad) await this._fh.write(new Uint8Array(pad), 0, pad, this._offset);
    const offset = this._offset + pad;
    await this._fh.write(bytes, 0, bytes.byteLength, offset);
    this._offset = offset + bytes.byteLength;
    return { offset, length: bytes.byteLength };
  }

  get size(): number {
    return this._offset;
  }

  async close(): Promise<void> {
    await this._fh.close();
  }
}

export class GraphBuilder {
  private readonly _nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly _initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly _inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly _outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private _counter = 0;

  constructor(private readonly _data: ExternalDataFile) {}

  input(name: string, type: ElemType, dims: Dim[]): string {
    this._inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Declares `value` as a graph output named `name` (an Identity is inserted if the names differ). */
  output(name: string, value: string, type: ElemType, dims: Dim[]): void {
    if (value !== name) this.op('Identity', [value], {}, { outputs: [name] });
    this._outputs.push(valueInfo(name, type, dims));
  }

  /** A weight, written to the external-data file now and referenced from the graph. */
  async weight(name: string, type: ElemType, dims: number[], data: TypedArray): Promise<string> {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const { offset, length } = await this._data.append(bytes);
    this._initializers.push({
      name,
      dims,
      dataType: DATA_TYPE[type],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: basename(this._data.path) },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(length) },
      ],
    });
    return name;
  }

  /** A small constant stored inside the graph. */
  constant(type: 'int64' | 'float32' | 'float16' | 'int32', dims: number[], values: readonly number[], name?: string): string {
    const n = name ?? this._fresh('const');
    const t: onnxProto.onnx.ITensorProto = { name: n, dims, dataType: DATA_TYPE[type] };
    if (type === 'int64') t.rawData = new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);
    else if (type === 'int32') t.rawData = new Uint8Array(Int32Array.from(values).buffer);
    else if (type === 'float16')
      t.rawData = new Uint8Array(new Uint16Array(values).buffer); // values are fp16 bits
    else t.rawData = new Uint8Array(Float32Array.from(values).buffer);
    this._initializers.push(t);
    return n;
  }

  /** Adds a node; returns its output names (fresh unless given). Empty strings skip optional inputs. */
  op(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    opts: { outputs?: number | string[]; domain?: string } = {},
  ): string[] {
    const outputs = Array.isArray(opts.outputs) ? opts.outputs : Array.from({ length: opts.outputs ?? 1 }, () => this._fresh(opType));
    this._nodes.push({
      opType,
      domain: opts.domain ?? '',
      name: this._fresh(`${opType}_node`),
      input: inputs,
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  /** `op` for the common single-output case. */
  op1(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain?: string): string {
    return this.op(opType, inputs, attrs, { domain })[0]!;
  }

  /** Serializes the model. `opsets` maps domain ('' for ai.onnx) to version. */
  encode(graphName: string, opsets: Record<string, number>, metadata: Record<string, string> = {}): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'opt-complete',
      opsetImport: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
      metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
      graph: {
        name: graphName,
        node: this._nodes,
        initializer: this._initializers,
        input: this._inputs,
        output: this._outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private _fresh(prefix: string): string {
    return `${prefix}_${this._counter++}`;
  }
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: DATA_TYPE[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return { name, type: T.INT, i: v };
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.FLOATS, floats: v.floats };
}
