/**
 * How a site policy is stored in Redis: its JSON, zlib-deflated.
 *
 * Every version is kept (an operator can roll back to any of them), and a reference-size policy is
 * ~25 kB of JSON, so a version that changes 1,000 sites is ~25 MB. Deflated (level 3) it is ~12×
 * smaller, which is both the Redis memory of the version history and the bytes a commit must write
 * before the push can start (fan-out bench, BENCHMARKS.md). Compression runs on the event loop in
 * slices of a few milliseconds: on libuv's thread pool the same work took twice as long (1,000
 * separate jobs, each with its own zlib context, on two cores shared with the controller), and in
 * slices the controller's streams and timers still run between them.
 *
 * Values written before compression are plain JSON; they are still read (a zlib stream never
 * starts with `{`).
 */
import { promisify } from 'node:util';
import { deflateSync, inflate } from 'node:zlib';
import { ControllerError } from './errors';
import type { CompiledSitePolicy } from './policy-compiler';

const inflateAsync = promisify(inflate);

/** zlib level: level 3 compressed better and faster than level 1 on reference policies (11.7× at 264 MB/s vs 9.9× at 207 MB/s). */
const LEVEL = 3;
const OPEN_BRACE = 0x7b;

/** Longest run of compression before the event loop gets a turn. */
const SLICE_MS = 5;

/** The stored forms of policies' JSON, in order (compressed in slices of at most ~{@link SLICE_MS} ms). */
export async function encodePolicyBlobs(jsons: readonly string[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let sliceStart = performance.now();
  for (const json of jsons) {
    if (performance.now() - sliceStart >= SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
    out.push(deflateSync(json, { level: LEVEL }));
  }
  return out;
}

/**
 * A stored policy back as an object. `key` names the value in errors. A value that neither inflates
 * nor parses as a policy object is `CTRL_ERR_POLICY_STORE` (what is wrong, and where).
 */
export async function decodePolicyBlob(key: string, blob: Buffer): Promise<CompiledSitePolicy> {
  let json: string;
  if (blob[0] === OPEN_BRACE) {
    json = blob.toString('utf8');
  } else {
    try {
      json = (await inflateAsync(blob)).toString('utf8');
    } catch (err) {
      throw new ControllerError(
        'CTRL_ERR_POLICY_STORE',
        `policy store (Redis): ${key} is neither JSON nor zlib-deflated JSON (${blob.length} bytes): ${(err as Error).message}`,
      );
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new ControllerError(
      'CTRL_ERR_POLICY_STORE',
      `policy store (Redis): ${key} does not hold valid JSON: ${(err as Error).message}`,
    );
  }
  const p = value as Partial<CompiledSitePolicy> | null;
  if (p === null || typeof p !== 'object' || typeof p.site !== 'string' || typeof p.version !== 'number') {
    throw new ControllerError(
      'CTRL_ERR_POLICY_STORE',
      `policy store (Redis): ${key} is not a site policy (expected an object with "site" and "version")`,
    );
  }
  return p as CompiledSitePolicy;
}
