/**
 * One timer for many deadlines: a binary min-heap of due times drained by a single `setTimeout`.
 * The probe engine has two deadlines per probe (next send, reply timeout) for every target; one
 * Node timer per deadline would mean tens of thousands of timer objects per second with many peers.
 */
export class TimerQueue {
  readonly #due: number[] = [];
  readonly #fns: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #stopped = false;

  /** Current time on the queue's clock (monotonic ms). */
  now(): number {
    return performance.now();
  }

  /** Runs `fn` at monotonic time `dueMs` (or as soon as possible when it is already past). */
  at(dueMs: number, fn: () => void): void {
    if (this.#stopped) return;
    this.#push(dueMs, fn);
    if (dueMs < this.#timerAt) this.#arm();
  }

  /** Number of pending deadlines. */
  get size(): number {
    return this.#due.length;
  }

  /** Drops every pending deadline; later `at()` calls are ignored. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#due.length = 0;
    this.#fns.length = 0;
  }

  #arm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const next = this.#due[0];
    if (next === undefined || this.#stopped) return;
    this.#timerAt = next;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, next - this.now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    // Run everything due now (and within half a millisecond: setTimeout has 1 ms granularity).
    const limit = this.now() + 0.5;
    let guard = 100_000;
    while (!this.#stopped && this.#due.length > 0 && (this.#due[0] as number) <= limit && guard-- > 0) {
      const fn = this.#pop();
      fn();
    }
    this.#arm();
  }

  #push(due: number, fn: () => void): void {
    const d = this.#due;
    const f = this.#fns;
    let i = d.length;
    d.push(due);
    f.push(fn);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((d[parent] as number) <= due) break;
      d[i] = d[parent] as number;
      f[i] = f[parent] as () => void;
      i = parent;
    }
    d[i] = due;
    f[i] = fn;
  }

  #pop(): () => void {
    const d = this.#due;
    const f = this.#fns;
    const top = f[0] as () => void;
    const lastDue = d.pop() as number;
    const lastFn = f.pop() as () => void;
    const n = d.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && (d[r] as number) < (d[l] as number) ? r : l;
        if ((d[c] as number) >= lastDue) break;
        d[i] = d[c] as number;
        f[i] = f[c] as () => void;
        i = c;
      }
      d[i] = lastDue;
      f[i] = lastFn;
    }
    return top;
  }
}
