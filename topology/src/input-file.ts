/** Reading input files (topology, state) with a size cap, so no file can hang or exhaust memory. */
import * as fs from 'node:fs';
import { makeProblem, type TopologyProblem } from './errors';
import { MAX_INPUT_BYTES } from './yaml-source';

/**
 * Reads a UTF-8 text file of at most `MAX_INPUT_BYTES`. Reads in chunks and stops past the cap, so
 * `/dev/zero` or a FIFO cannot hang or exhaust memory. Problems are values (`TOPO_ERR_UNREADABLE`,
 * `TOPO_ERR_TOO_LARGE`), not throws.
 */
export function readTextFile(path: string): { text: string } | { problem: TopologyProblem } {
  const fail = (
    code: 'TOPO_ERR_UNREADABLE' | 'TOPO_ERR_TOO_LARGE',
    found: string,
    expected: string,
    what: string,
  ) => ({
    problem: makeProblem(code, path, 1, 1, '', found, expected, what),
  });
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code;
    return fail('TOPO_ERR_UNREADABLE', why, 'a readable file', `cannot read file: ${why}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory())
      return fail('TOPO_ERR_UNREADABLE', 'a directory', 'a file', 'cannot read file: it is a directory');
    if (st.isFile() && st.size > MAX_INPUT_BYTES) {
      return fail(
        'TOPO_ERR_TOO_LARGE',
        `${st.size} bytes`,
        `at most ${MAX_INPUT_BYTES} bytes (${MAX_INPUT_BYTES / 1048576} MiB)`,
        'file too large',
      );
    }
    const chunks: Buffer[] = [];
    let total = 0;
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(fd, chunk, 0, chunk.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
        return fail('TOPO_ERR_UNREADABLE', code, 'a readable file', `cannot read file: ${code}`);
      }
      if (n === 0) break;
      total += n;
      if (total > MAX_INPUT_BYTES) {
        return fail(
          'TOPO_ERR_TOO_LARGE',
          `more than ${MAX_INPUT_BYTES} bytes`,
          `at most ${MAX_INPUT_BYTES} bytes (${MAX_INPUT_BYTES / 1048576} MiB)`,
          'file too large',
        );
      }
      chunks.push(Buffer.from(chunk.subarray(0, n)));
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
    } catch {
      return fail(
        'TOPO_ERR_UNREADABLE',
        'bytes that are not UTF-8',
        'UTF-8 text',
        'cannot read file: not UTF-8 text',
      );
    }
    return { text: text.startsWith('\uFEFF') ? text.slice(1) : text };
  } finally {
    fs.closeSync(fd);
  }
}
