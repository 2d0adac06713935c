/**
 * Seeded randomness in float64 JS numbers. Every random draw in the library goes through a `Rng`
 * (for JS-side draws such as batch indices and timesteps) or through a tf seed derived with
 * `deriveSeed` (for tensor draws), so that the same seed gives the same numbers on the same backend.
 */

/** 32-bit integer hash (a murmur3 finaliser) used to mix seeds with stream keys. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Derives an independent 31-bit seed from a base seed and any number of integer keys (a step, a
 * timestep, a stream name's index). tf.random* ops take it as their `seed`.
 */
export function deriveSeed(seed: number, ...keys: number[]): number {
  let h = mix32((seed | 0) ^ 0x9e3779b9);
  for (const k of keys) h = mix32(h ^ mix32((k | 0) + 0x7f4a7c15));
  return h & 0x7fffffff;
}

/** A small fast seeded generator (sfc32) with uniform, integer and standard-normal draws. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new Error(`seed must be a finite number, got ${seed}`);
    this.a = deriveSeed(seed, 1);
    this.b = deriveSeed(seed, 2);
    this.c = deriveSeed(seed, 3);
    this.d = 1;
    for (let i = 0; i < 15; i++) this.nextUint32(); // warm up: sfc32's first outputs are correlated with the seed
  }

  /** The whole state, so that a run can be checkpointed and resumed bit for bit. */
  getState(): number[] {
    return [this.a, this.b, this.c, this.d, this.spare ?? NaN];
  }

  setState(state: number[]): void {
    if (state.length !== 5) throw new Error(`Rng state must have 5 entries, got ${state.length}`);
    [this.a, this.b, this.c, this.d] = state.map((v) => v >>> 0);
    this.spare = Number.isNaN(state[4]) ? null : state[4];
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }

  /** Standard normal draw (Box–Muller, both values used). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** A fresh 31-bit seed for a tf.random* op, drawn from this stream. */
  seed(): number {
    return this.nextUint32() & 0x7fffffff;
  }
}
