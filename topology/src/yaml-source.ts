/**
 * YAML text → plain value plus a way to find where any field came from (line and column), so that
 * every problem can point at its source. Also the input guards: size cap, nesting cap, alias cap.
 */
import { Document, isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { makeProblem, type TopologyProblem } from './errors';

/** One step of a field path: a mapping key or a list index. */
export type PathSegment = string | number;

/**
 * Largest input accepted (bytes). 5,000 sites and links take 0.8 MB; the YAML parser handles about
 * 0.5 MB/s on the shared CI machine (8 MiB ≈ 17 s and 1 GB of memory, 16 MiB took 35 s and 2 GB),
 * so 8 MiB bounds both time and memory while leaving room for 50,000 sites.
 */
export const MAX_INPUT_BYTES = 8 * 1024 * 1024;
/** Deepest nesting accepted; the topology format needs 5. Guards the parser's recursion. */
export const MAX_NESTING = 128;
/** Alias expansions allowed (yaml's own guard against "billion laughs"). */
export const MAX_ALIAS_COUNT = 1000;

/** A parsed YAML (or JSON) document whose fields can be located in the source. */
export interface LocatedValue {
  readonly file: string;
  readonly value: unknown;
  /**
   * 1-based line/column of the deepest existing node along `path` (of the key itself, rather than
   * its value, with `atKey`).
   */
  locate(path: readonly PathSegment[], atKey?: boolean): { line: number; column: number };
}

/** `['links', 3, 'b']` → `links[3].b`; keys that are not plain words are quoted. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Short rendering of a found value for messages: `'sh-z'`, `-5`, `a list of 3 items`, `missing`. */
export function renderValue(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null (empty)';
  if (typeof value === 'string') {
    const s = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return `'${s}'`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (Array.isArray(value)) return `a list of ${value.length} item${value.length === 1 ? '' : 's'}`;
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}

/**
 * Cheap upper bound of the nesting depth, computed before the YAML parser sees the text: the
 * parser recurses per level, and a file of a million `[` must be refused, not crash the process.
 * Counts flow brackets outside quotes and comments, plus the block indentation stack and compact
 * `- ` indicators; over-estimates only for odd files (deep block scalars), which are refused too.
 */
export function estimateNesting(text: string): number {
  let max = 0;
  let flow = 0;
  const indents: number[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    // start of a line: indentation and leading sequence indicators
    let col = 0;
    while (i < n && text.charCodeAt(i) === 32) {
      i++;
      col++;
    }
    let dashes = 0;
    while (i + 1 < n && text[i] === '-' && (text[i + 1] === ' ' || text[i + 1] === '\t')) {
      dashes++;
      i += 2;
      while (i < n && text.charCodeAt(i) === 32) i++;
    }
    const blank = i >= n || text[i] === '\n' || text[i] === '\r' || text[i] === '#';
    if (!blank && flow === 0) {
      while (indents.length > 0 && indents[indents.length - 1]! >= col) indents.pop();
      indents.push(col);
    }
    let quote = '';
    for (; i < n && text[i] !== '\n'; i++) {
      const c = text[i];
      if (quote !== '') {
        if (c === '\\' && quote === '"') i++;
        else if (c === quote) quote = '';
        continue;
      }
      if (c === '"' || c === "'") {
        const prev = i === 0 ? ' ' : text[i - 1]!;
        if (/[\s[{,:]/.test(prev)) quote = c;
      } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
        while (i < n && text[i] !== '\n') i++;
        break;
      } else if (c === '[' || c === '{') {
        flow++;
      } else if ((c === ']' || c === '}') && flow > 0) {
        flow--;
      }
      const depth = indents.length + dashes + flow;
      if (depth > max) max = depth;
    }
    const depth = indents.length + dashes + flow;
    if (depth > max) max = depth;
    i++;
  }
  return max;
}

function keyOf(node: unknown): string | undefined {
  if (isScalar(node)) return String(node.value);
  return undefined;
}

/**
 * Parses YAML text into a located value, or returns the problems that prevent it: size, nesting,
 * every syntax error the parser reports (duplicate keys are reported but do not stop parsing),
 * alias expansion.
 */
export function parseYamlSource(
  text: string,
  file: string,
): { source?: LocatedValue; problems: TopologyProblem[] } {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_INPUT_BYTES) {
    return {
      problems: [
        tooLarge(
          file,
          1,
          1,
          `${bytes} bytes`,
          `at most ${MAX_INPUT_BYTES} bytes (${MAX_INPUT_BYTES / 1048576} MiB)`,
        ),
      ],
    };
  }
  const nesting = estimateNesting(text);
  if (nesting > MAX_NESTING) {
    return {
      problems: [
        tooLarge(file, 1, 1, `nesting depth about ${nesting}`, `nesting of at most ${MAX_NESTING} levels`),
      ],
    };
  }
  const lineCounter = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, {
      lineCounter,
      prettyErrors: false,
      uniqueKeys: true,
      keepSourceTokens: false,
    });
  } catch (err) {
    // The parser reports problems as values; a throw here means it ran out of stack or memory.
    return {
      problems: [
        tooLarge(file, 1, 1, `a document the parser cannot handle (${String(err)})`, 'a smaller document'),
      ],
    };
  }
  const pos = (offset: number): { line: number; column: number } => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const problems: TopologyProblem[] = [];
  let fatal = false;
  for (const e of doc.errors) {
    const { line, column } = pos(e.pos[0]);
    if (e.code === 'DUPLICATE_KEY') {
      problems.push(
        makeProblem(
          'TOPO_ERR_DUPLICATE_KEY',
          file,
          line,
          column,
          '',
          'a repeated key',
          'unique keys',
          e.message,
        ),
      );
    } else {
      fatal = true;
      problems.push(
        makeProblem(
          'TOPO_ERR_YAML_SYNTAX',
          file,
          line,
          column,
          '',
          e.code,
          'valid YAML',
          `YAML syntax: ${e.message}`,
        ),
      );
    }
  }
  if (fatal) return { problems };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const alias = firstAliasOffset(doc);
    const { line, column } = pos(alias);
    return {
      problems: [
        ...problems,
        tooLarge(
          file,
          line,
          column,
          `aliases that expand too far (${err instanceof Error ? err.message : String(err)})`,
          `at most ${MAX_ALIAS_COUNT} alias expansions`,
        ),
      ],
    };
  }
  const locate = (path: readonly PathSegment[], atKey = false): { line: number; column: number } => {
    let node: unknown = doc.contents;
    let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
    let throughAlias = false;
    for (const [depth, seg] of path.entries()) {
      if (isAlias(node)) {
        node = node.resolve(doc);
        throughAlias = true; // keep pointing at the alias: that is where the user wrote it
      }
      let next: unknown;
      let nextOffset: number | undefined;
      if (isMap(node)) {
        const pair = node.items.find((p) => keyOf(p.key) === String(seg));
        if (pair === undefined) break;
        next = pair.value;
        const v = pair.value as Node | null;
        const k = pair.key as Node | null;
        const keyOffset = k?.range?.[0] ?? undefined;
        nextOffset =
          (atKey && depth === path.length - 1) || v?.range == null || (isScalar(v) && v.value === null)
            ? keyOffset
            : v.range[0];
      } else if (isSeq(node) && typeof seg === 'number') {
        next = node.items[seg];
        if (next === undefined) break;
        nextOffset = (next as Node).range?.[0];
      } else {
        break;
      }
      node = next;
      if (!throughAlias && nextOffset !== undefined) offset = nextOffset;
    }
    return pos(offset);
  };
  return { source: { file, value, locate }, problems };
}

function firstAliasOffset(doc: Document.Parsed): number {
  let found = 0;
  const seen: unknown[] = [doc.contents];
  while (seen.length > 0 && found === 0) {
    const n = seen.pop();
    if (isAlias(n)) found = n.range?.[0] ?? 0;
    else if (isMap(n)) for (const p of n.items) seen.push(p.value);
    else if (isSeq(n)) for (const it of n.items) seen.push(it);
  }
  return found;
}

function tooLarge(
  file: string,
  line: number,
  column: number,
  found: string,
  expected: string,
): TopologyProblem {
  return makeProblem(
    'TOPO_ERR_TOO_LARGE',
    file,
    line,
    column,
    '',
    found,
    expected,
    `input refused: ${found}`,
  );
}
