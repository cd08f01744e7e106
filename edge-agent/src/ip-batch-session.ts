/**
 * A long-lived `ip [-n NS] [-4|-6] -force -batch -` process: a batch of iproute2 commands is a
 * write to its stdin and a read of its answer, with no process spawn. Fast reroute needs this: a
 * spawn forks the (large) agent process, which under CPU load took 40–95 ms per switch and blocks
 * the agent's event loop while it forks.
 *
 * How an answer is read (iproute2 6.1, measured): `ip -batch -` executes each line as it arrives
 * and flushes stdout after each command; a runtime failure prints its message (`RTNETLINK answers:
 * …`) then `Command failed -:N` on stderr, N counting lines since the process started, and `-force`
 * goes on. stderr is merged into stdout by the shell that execs ip, so messages keep their order.
 * Each batch ends with a sentinel, `link show dev lo`, whose output (`1: lo: …` and one more line)
 * says that every line before it has been executed. A parse error (a malformed argument) makes ip
 * exit: the batch in flight fails (`exited`, ip's message in `detail`) and the next batch starts a
 * new process. So does a batch unanswered after `timeoutMs` (`timeout`: the process is killed).
 *
 * Lines must not print `N: lo:` themselves (it would read as the sentinel); rule and route
 * add/del print nothing when they succeed.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface IpBatchSessionOptions {
  /** Network namespace (`ip -n NS`); absent: the current one. */
  readonly netns?: string;
  /** Address family of every command (`ip -4` / `ip -6`); absent: none given. */
  readonly family?: 4 | 6;
  /** The ip binary (tests may point elsewhere). */
  readonly ipBin?: string;
  /** Longest wait for a batch's answer before the process is killed (default 2000 ms). */
  readonly timeoutMs?: number;
}

/** What ip said about one batch. */
export interface IpBatchAnswer {
  /** Per line of the batch, in order: null when ip carried it out, else its error message. */
  readonly errors: readonly (string | null)[];
  /** Everything ip printed for the batch (stdout and stderr in order), the sentinel's lines excluded. */
  readonly output: string;
}

/**
 * Why a batch got no answer: the process exited under it (a parse error, killed) or could not
 * start, it did not answer in time (killed, restarted on the next batch), or the session is closed.
 */
export type IpBatchFailureReason = 'exited' | 'timeout' | 'closed';

export type IpBatchOutcome =
  | { readonly ok: true; readonly answer: IpBatchAnswer }
  | {
      readonly ok: false;
      readonly reason: IpBatchFailureReason;
      /** What ip printed for the batch before it failed, and how the process ended. */
      readonly detail: string;
    };

const SENTINEL = 'link show dev lo';
const DEFAULT_TIMEOUT_MS = 2000;
/** How long close() lets ip finish its input before killing it. */
const CLOSE_GRACE_MS = 1000;

interface Waiting {
  readonly lines: readonly string[];
  readonly resolve: (out: IpBatchOutcome) => void;
}

interface InFlight extends Waiting {
  readonly child: ChildProcessWithoutNullStreams;
  /** Absolute number (for `Command failed -:N`) of the line before the batch's first. */
  readonly base: number;
  readonly errors: (string | null)[];
  readonly output: string[];
  /** Messages since the last `Command failed` marker: the text of the next failed line. */
  pending: string[];
  /** The sentinel's first line was seen; its second line ends the batch. */
  sawLo: boolean;
  readonly timer: NodeJS.Timeout;
}

/** Unref'd pipe handles (net.Socket at run time) so that an open session never holds the agent. */
function unrefStream(s: unknown): void {
  (s as { unref?: () => void }).unref?.();
}

/**
 * One persistent `ip -force -batch -` process, restarted on demand. Batches run one at a time, in
 * the order given; every `run()` resolves (never rejects for anything ip does).
 */
export class IpBatchSession {
  readonly #args: readonly string[];
  readonly #timeoutMs: number;
  #child: ChildProcessWithoutNullStreams | null = null;
  /** Lines written to the current process (for `Command failed -:N`). */
  #written = 0;
  /** Output of the current process not yet ended by a newline. */
  #partial = '';
  #queue: Waiting[] = [];
  #inFlight: InFlight | null = null;
  #closed = false;
  #starts = 0;

  constructor(options: IpBatchSessionOptions = {}) {
    const ns = options.netns !== undefined ? ['-n', options.netns] : [];
    const fam = options.family !== undefined ? [`-${options.family}`] : [];
    this.#args = [options.ipBin ?? 'ip', ...ns, ...fam, '-force', '-batch', '-'];
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** The ip process's pid while one runs, else null. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** Processes started so far (a restart after an exit or a timeout counts). */
  get starts(): number {
    return this.#starts;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts the process now if none runs (so that the first batch does not pay the spawn). */
  start(): void {
    if (this.#closed || this.#child !== null) return;
    // The shell only merges stderr into stdout (ordering) and then becomes ip (exec).
    const child = spawn('/bin/sh', ['-c', 'exec "$@" 2>&1', 'sh', ...this.#args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.#written = 0;
    this.#partial = '';
    this.#starts++;
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) unrefStream(s);
    child.stdin.on('error', () => undefined); // EPIPE after an exit: 'close' reports it
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (this.#child === child) this.#onData(d);
    });
    child.stderr.resume(); // empty: 2>&1
    const ended = (how: string): void => {
      if (this.#child !== child) return;
      this.#child = null;
      const f = this.#inFlight;
      if (f !== null && f.child === child) {
        if (this.#partial !== '') f.output.push(this.#partial);
        this.#finish({ ok: false, reason: 'exited', detail: [...f.output, how].join('\n') });
      }
    };
    child.on('error', (err) => ended(`ip session could not run: ${err.message}`));
    child.on('close', (code, signal) =>
      ended(`ip exited (${signal !== null ? `signal ${signal}` : `code ${String(code)}`})`),
    );
  }

  /**
   * Runs `lines` (iproute2 batch commands without the leading `ip`, one command each) and
   * resolves with each line's fate once ip has executed them all.
   */
  run(lines: readonly string[]): Promise<IpBatchOutcome> {
    for (const l of lines) {
      if (/[\r\n]/.test(l) || l.trim() === '') throw new TypeError(`not one ip batch command: '${l}'`);
    }
    if (this.#closed) {
      return Promise.resolve({ ok: false, reason: 'closed', detail: 'the ip session is closed' });
    }
    if (lines.length === 0) return Promise.resolve({ ok: true, answer: { errors: [], output: '' } });
    return new Promise((resolve) => {
      this.#queue.push({ lines, resolve });
      this.#next();
    });
  }

  /**
   * Ends the process after the batch in flight (queued batches fail with `closed`) and resolves
   * once it is gone; it is killed if it has not ended within a second.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#queue.splice(0)) {
      w.resolve({ ok: false, reason: 'closed', detail: 'the ip session was closed' });
    }
    const child = this.#child;
    if (child === null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), CLOSE_GRACE_MS);
      child.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      child.stdin.end();
    });
  }

  #next(): void {
    if (this.#inFlight !== null) return;
    const w = this.#queue.shift();
    if (w === undefined) return;
    this.start();
    const child = this.#child;
    if (child === null) {
      w.resolve({ ok: false, reason: 'closed', detail: 'the ip session is closed' });
      return;
    }
    const base = this.#written;
    this.#written += w.lines.length + 1;
    this.#inFlight = {
      ...w,
      child,
      base,
      errors: w.lines.map(() => null),
      output: [],
      pending: [],
      sawLo: false,
      // Ref'd (unlike the pipes): a caller awaiting an answer keeps the process alive until then.
      timer: setTimeout(() => this.#timedOut(child), this.#timeoutMs),
    };
    child.stdin.write(`${w.lines.join('\n')}\n${SENTINEL}\n`);
  }

  #timedOut(child: ChildProcessWithoutNullStreams): void {
    if (this.#child !== child) return;
    this.#child = null;
    child.kill('SIGKILL');
    const f = this.#inFlight;
    this.#finish({
      ok: false,
      reason: 'timeout',
      detail: [...(f?.output ?? []), `no answer from ip within ${this.#timeoutMs} ms (killed)`].join('\n'),
    });
  }

  #onData(chunk: string): void {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop() ?? '';
    for (const line of parts) this.#onLine(line);
  }

  #onLine(line: string): void {
    const f = this.#inFlight;
    if (f === null) return; // nothing asked: cannot happen with a sentinel per batch
    if (f.sawLo) {
      // The sentinel's second line (`link/loopback …`): every line of the batch has run.
      this.#finish({ ok: true, answer: { errors: f.errors, output: f.output.join('\n') } });
      return;
    }
    const failed = /^Command failed -:(\d+)$/.exec(line);
    if (failed !== null) {
      const index = Number(failed[1]) - f.base - 1;
      const message = f.pending.join('\n') || 'failed';
      f.pending = [];
      if (index >= 0 && index < f.errors.length) f.errors[index] = message;
      else if (index === f.errors.length) {
        // The sentinel itself failed (no `lo`?): still, everything before it has run.
        this.#finish({ ok: true, answer: { errors: f.errors, output: f.output.join('\n') } });
        return;
      }
      f.output.push(line);
      return;
    }
    if (/^\d+: lo: /.test(line)) {
      f.sawLo = true;
      return;
    }
    f.output.push(line);
    f.pending.push(line);
  }

  #finish(out: IpBatchOutcome): void {
    const f = this.#inFlight;
    if (f === null) return;
    clearTimeout(f.timer);
    this.#inFlight = null;
    f.resolve(out);
    this.#next();
  }
}
