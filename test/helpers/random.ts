/** Deterministic randomness for tests, so a failure reproduces. */

/** A fixed permutation of 1..n (seeded Fisher–Yates with a linear congruential generator). */
export function shuffled(n: number, seed: number): number[] {
  const xs = Array.from({ length: n }, (_, i) => i + 1);
  let s = seed >>> 0;
  for (let i = xs.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    const j = s % (i + 1);
    [xs[i], xs[j]] = [xs[j] as number, xs[i] as number];
  }
  return xs;
}
