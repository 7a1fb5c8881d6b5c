// The text the benchmarks feed the model: a TypeScript module and a Markdown document long enough
// for any prompt length used here (built from templates with varied names, so BPE sees realistic
// code and prose rather than one repeated line), and the text typed in the editor replay.

const ENTITIES = [
  'invoice',
  'customer',
  'shipment',
  'warehouse',
  'payment',
  'refund',
  'order',
  'supplier',
  'product',
  'discount',
  'ticket',
  'session',
  'report',
  'account',
  'schedule',
  'review',
];
const VERBS = ['load', 'save', 'validate', 'archive', 'merge', 'price', 'summarize', 'reconcile'];

const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);

function tsBlock(entity: string, verb: string, i: number): string {
  const T = cap(entity);
  return `
/** ${cap(verb)}s a ${entity} and records how long it took. */
export async function ${verb}${T}(store: Store<${T}>, id: string, options: ${T}Options = {}): Promise<${T} | undefined> {
  const started = performance.now();
  const ${entity} = await store.get(id);
  if (!${entity}) {
    log.warn(\`${entity} \${id} not found (attempt ${i})\`);
    return undefined;
  }
  const limit = options.limit ?? ${10 + i};
  if (${entity}.items.length > limit) throw new RangeError(\`${entity} \${id} has \${${entity}.items.length} items, more than \${limit}\`);
  metrics.observe('${verb}_${entity}_ms', performance.now() - started);
  return { ...${entity}, updatedAt: new Date().toISOString() };
}
`;
}

/** A TypeScript module of roughly `chars` characters. */
export function typescriptSource(chars = 24_000): string {
  let s = `// Service layer for the back office: each function loads, checks and stores one kind of record.\nimport { log, metrics } from './observability.js';\nimport type { Store } from './store.js';\n`;
  for (let i = 0; s.length < chars; i++)
    s += tsBlock(ENTITIES[i % ENTITIES.length]!, VERBS[Math.floor(i / ENTITIES.length) % VERBS.length]!, i);
  return s;
}

function mdSection(entity: string, i: number): string {
  return `
## ${cap(entity)}s

Every ${entity} belongs to exactly one account, and the service keeps its history for ${12 + (i % 6)} months. When a ${entity} changes, the previous version is archived rather than overwritten, so an auditor can always reconstruct what a customer saw on a given day. Batch jobs that touch more than ${100 * (i + 1)} ${entity}s at once must run outside business hours.

- Create a ${entity} with \`POST /${entity}s\`; the response carries its id and version.
- Read it with \`GET /${entity}s/{id}\`, optionally at an earlier \`?version=\`.
- Deleting a ${entity} only marks it as deleted; the nightly job removes it after the retention period.
`;
}

/** A Markdown document of roughly `chars` characters. */
export function markdownDocument(chars = 24_000): string {
  let s = `# Back-office service\n\nThis document describes the records the back-office service manages and the rules it enforces for each of them.\n`;
  for (let i = 0; s.length < chars; i++) s += mdSection(ENTITIES[i % ENTITIES.length]!, i);
  return s;
}

/** What the editor replay types, one character at a time, after the context. */
export const TYPED_TYPESCRIPT = `
/** Customers with overdue invoices, oldest first. */
export async function overdue(store: Store<Invoice>, today: Date): Promise<string[]> {
  const late = (await store.list()).filter((inv) => new Date(inv.dueDate) < today);
  return late.map((inv) => inv.customerId);
}
`;

export const TYPED_MARKDOWN = `
## Refund policy

A refund goes back to the original payment method within five business days. Partial refunds are allowed when only some items of an order are returned; refunds above the approval limit need a second reviewer.
`;
