/**
 * A progress line for long loops: a redrawn bar on a terminal, plain lines when stdout is a pipe or
 * a file (CI logs, notebooks), at most one plain line every few seconds.
 */

/** Formats seconds as 1h02m, 3m05s or 12.3s. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds >= 3600) return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
  if (seconds >= 60) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${seconds.toFixed(1)}s`;
}

/** Draws `label [#####-----] 40% 120/300 · 55.1 steps/s · loss 0.512 · ETA 3.3s`. */
export class Progress {
  private lastPlain = 0;
  private readonly started = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly plainEverySeconds = 5,
  ) {}

  /** Reports that `done` of `total` are finished; `extra` is appended (e.g. the loss). */
  update(done: number, extra = ''): void {
    const elapsed = (Date.now() - this.started) / 1000;
    const rate = done / Math.max(elapsed, 1e-9);
    const eta = (this.total - done) / Math.max(rate, 1e-9);
    const pct = Math.round((100 * done) / this.total);
    const info = `${pct}% ${done}/${this.total} · ${rate.toFixed(1)}/s${extra ? ` · ${extra}` : ''} · ETA ${formatDuration(eta)}`;
    if (this.out.isTTY) {
      const width = 24;
      const filled = Math.round((width * done) / this.total);
      this.out.write(`\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${info}\x1b[K`);
      if (done >= this.total) this.out.write('\n');
    } else if (done >= this.total || elapsed - this.lastPlain >= this.plainEverySeconds) {
      this.lastPlain = elapsed;
      this.out.write(`${this.label}: ${info}\n`);
    }
  }
}
