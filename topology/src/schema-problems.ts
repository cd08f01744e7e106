/**
 * Turns TypeBox validation errors into precise `TopologyProblem`s: the right code, the field path
 * in `links[3].b` form, the source position, what was found and what the schema expects.
 */
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { makeProblem, type TopologyErrorCode, type TopologyProblem } from './errors';
import { formatPath, renderValue, type LocatedValue, type PathSegment } from './yaml-source';

interface SchemaInfo {
  readonly type?: string;
  readonly const?: string | number | boolean;
  readonly anyOf?: readonly SchemaInfo[];
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly minLength?: number;
  readonly minItems?: number;
  readonly description?: string;
  readonly errorCode?: TopologyErrorCode;
}

/** Human description of what a schema accepts: `a number >= 0`, `one of dc, cloud, edge`. */
export function describeSchema(schema: TSchema): string {
  const s = schema as SchemaInfo;
  if (s.anyOf !== undefined && s.anyOf.every((x) => x.const !== undefined)) {
    return `one of ${s.anyOf.map((x) => String(x.const)).join(', ')}`;
  }
  if (s.const !== undefined) return String(s.const);
  if (s.type === 'string') {
    return (s.minLength ?? 0) > 0 ? `a non-empty string (${s.description ?? 'text'})` : 'a string';
  }
  if (s.type === 'number' || s.type === 'integer') {
    const base = s.type === 'integer' ? 'an integer' : 'a number';
    const lo =
      s.exclusiveMinimum !== undefined
        ? `> ${s.exclusiveMinimum}`
        : s.minimum !== undefined
          ? `>= ${s.minimum}`
          : '';
    const hi =
      s.exclusiveMaximum !== undefined
        ? `< ${s.exclusiveMaximum}`
        : s.maximum !== undefined
          ? `<= ${s.maximum}`
          : '';
    const range = [lo, hi].filter((x) => x !== '').join(' and ');
    return range === '' ? base : `${base} ${range}`;
  }
  if (s.type === 'boolean') return 'true or false';
  if (s.type === 'array')
    return (s.minItems ?? 0) > 0 ? `a non-empty list of ${s.description ?? 'items'}` : 'a list';
  if (s.type === 'object') return 'a mapping';
  return s.description ?? 'a valid value';
}

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checker(schema: TSchema): TypeCheck<TSchema> {
  let c = compiled.get(schema);
  if (c === undefined) {
    c = TypeCompiler.Compile(schema);
    compiled.set(schema, c);
  }
  return c;
}

/** JSON pointer (`/links/3/b`) → path segments, numbers where the value is a list. */
function pointerToPath(pointer: string, root: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let cur: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur) && /^\d+$/.test(key)) {
      out.push(Number(key));
      cur = cur[Number(key)];
    } else {
      out.push(key);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

const RANGE_ERRORS = new Set<ValueErrorType>([
  ValueErrorType.NumberMinimum,
  ValueErrorType.NumberMaximum,
  ValueErrorType.NumberExclusiveMinimum,
  ValueErrorType.NumberExclusiveMaximum,
  ValueErrorType.IntegerMinimum,
  ValueErrorType.IntegerMaximum,
  ValueErrorType.IntegerExclusiveMinimum,
  ValueErrorType.IntegerExclusiveMaximum,
  ValueErrorType.StringMinLength,
  ValueErrorType.ArrayMinItems,
]);

function codeFor(e: ValueError): TopologyErrorCode {
  const s = e.schema as SchemaInfo;
  if (e.type === ValueErrorType.ObjectRequiredProperty) return 'TOPO_ERR_REQUIRED';
  // The override is for value rules (version 1, non-empty lists), not for a wrong container type.
  if (s.errorCode !== undefined && e.type !== ValueErrorType.Array && e.type !== ValueErrorType.Object) {
    return s.errorCode;
  }
  if (e.type === ValueErrorType.Union || e.type === ValueErrorType.Literal) return 'TOPO_ERR_ENUM';
  return RANGE_ERRORS.has(e.type) ? 'TOPO_ERR_RANGE' : 'TOPO_ERR_TYPE';
}

function whatFor(code: TopologyErrorCode, field: string, found: string, e: ValueError): string {
  if (code === 'TOPO_ERR_REQUIRED') return `missing required field '${field}'`;
  if (code === 'TOPO_ERR_ENUM') return `unknown ${(e.schema as SchemaInfo).description ?? field} ${found}`;
  if (code === 'TOPO_ERR_RANGE') return `${field} out of range: ${found}`;
  if (code === 'TOPO_ERR_VERSION') return `unsupported version ${found}`;
  if (code === 'TOPO_ERR_EMPTY_SITES') return 'no sites';
  if (code === 'TOPO_ERR_EMPTY_CLASSES') return 'no traffic classes';
  return `wrong type for ${field}: ${found}`;
}

/**
 * Checks `source.value` against `schema` and returns one problem per offending field (a missing
 * field is reported once, not also as a type error). Fast path: a compiled check first.
 */
export function schemaProblems(schema: TSchema, source: LocatedValue): TopologyProblem[] {
  const check = checker(schema);
  if (check.Check(source.value)) return [];
  const problems: TopologyProblem[] = [];
  const reported = new Set<string>();
  for (const e of check.Errors(source.value)) {
    if (reported.has(e.path)) continue;
    // Errors under an already reported path add nothing (e.g. type errors of a missing field).
    let covered = false;
    for (let p = e.path; p.length > 0; p = p.slice(0, p.lastIndexOf('/'))) {
      if (reported.has(p) && p !== e.path) covered = true;
    }
    if (covered) continue;
    reported.add(e.path);
    const path = pointerToPath(e.path, source.value);
    const last = path[path.length - 1];
    const field = last === undefined ? 'document' : typeof last === 'number' ? `item ${last}` : last;
    const code = codeFor(e);
    const found = renderValue(e.value);
    const expected = describeSchema(e.schema);
    const { line, column } = source.locate(path);
    problems.push(
      makeProblem(
        code,
        source.file,
        line,
        column,
        formatPath(path),
        found,
        expected,
        whatFor(code, field, found, e),
      ),
    );
  }
  return problems;
}
