// A transfer rate from a counter that grows in steps. spool counts bytes
// a whole chunk at a time, so the rate is taken over a window several
// chunks wide and then smoothed, or it would jump with every chunk.
export class RateMeter {
  private samples: { t: number; bytes: number }[] = [];
  private smoothed: number | null = null;

  constructor(
    private readonly windowMs = 8_000,
    private readonly alpha = 0.3,
  ) {}

  /** Records the counter's value at time t (ms, performance.now()). */
  add(bytes: number, t: number): void {
    const last = this.samples.at(-1);
    if (last && bytes < last.bytes) this.reset();
    if (last && bytes === last.bytes) return;
    this.samples.push({ t, bytes });
    // Keep one sample older than the window as the baseline.
    while (this.samples.length > 2 && this.samples[1]!.t <= t - this.windowMs) this.samples.shift();
  }

  /** Whether the counter has moved since it was first seen. */
  get moving(): boolean {
    return this.samples.length >= 2;
  }

  /**
   * The smoothed rate in bytes per second at time now; call it at a
   * steady pace (it advances the smoothing). Null until the counter moved.
   */
  sample(now: number): number | null {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last === first) return null;
    const span = Math.max(now, last.t) - first.t;
    if (span <= 0) return this.smoothed;
    const rate = ((last.bytes - first.bytes) / span) * 1000;
    this.smoothed = this.smoothed === null ? rate : this.smoothed + this.alpha * (rate - this.smoothed);
    return this.smoothed;
  }

  reset(): void {
    this.samples = [];
    this.smoothed = null;
  }
}
