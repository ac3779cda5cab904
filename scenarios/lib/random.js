// Seeded randomness for the generators. Math.random cannot be seeded, so every random choice of a scenario
// (operation kind, accounts, amount) comes from a PRNG seeded from the run's seed and the VU id: a run is
// replayable from the seed setup() prints (modulo timing, which no seed controls).

/** mixSeed combines integers into one 32-bit seed (a murmur3-style finaliser, so nearby inputs spread apart). */
export function mixSeed(...parts) {
  let hash = 0x9e3779b9;
  for (const part of parts) {
    hash ^= Math.imul((part >>> 0) ^ (Math.floor(part / 4294967296) >>> 0), 0x85ebca6b);
    hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
    hash ^= hash >>> 16;
  }
  return hash >>> 0;
}

/** createRandom returns a function giving floats in [0, 1) from a 32-bit seed (mulberry32). */
export function createRandom(seed) {
  let state = seed >>> 0;
  return function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** randomInteger returns an integer in [min, max], both inclusive. */
export function randomInteger(random, min, max) {
  return min + Math.floor(random() * (max - min + 1));
}

/** shuffledIndexes returns a permutation of 0..count-1 (Fisher–Yates). */
export function shuffledIndexes(count, random) {
  const indexes = Array.from({ length: count }, (_, index) => index);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const swap = indexes[i];
    indexes[i] = indexes[j];
    indexes[j] = swap;
  }
  return indexes;
}

function searchCumulative(cumulative, target) {
  let low = 0;
  let high = cumulative.length - 1;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (cumulative[middle] > target) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  return low;
}

/** WeightedChoice picks one of `values` with probability proportional to `weights` (zero weights never). */
export class WeightedChoice {
  constructor(values, weights) {
    if (values.length === 0 || values.length !== weights.length) {
      throw new Error('WeightedChoice: values and weights must be non-empty and of equal length');
    }
    let total = 0;
    this.values = [];
    this.cumulative = [];
    values.forEach((value, index) => {
      if (weights[index] > 0) {
        total += weights[index];
        this.values.push(value);
        this.cumulative.push(total);
      }
    });
    if (total <= 0) {
      throw new Error('WeightedChoice: at least one weight must be positive');
    }
    this.total = total;
  }

  pick(random) {
    return this.values[searchCumulative(this.cumulative, random() * this.total)];
  }
}

/**
 * ZipfDistribution samples ranks 0..count-1 with P(rank k) ∝ 1/(k+1)^exponent: exponent 0 is uniform, 1 is
 * classic Zipf, larger is more skewed. The cumulative table is built once (count is the number of accounts).
 */
export class ZipfDistribution {
  constructor(count, exponent) {
    if (!(count >= 1) || !(exponent >= 0)) {
      throw new Error(`ZipfDistribution: need count >= 1 and exponent >= 0, got ${count}, ${exponent}`);
    }
    this.cumulative = new Array(count);
    let total = 0;
    for (let rank = 0; rank < count; rank++) {
      total += 1 / Math.pow(rank + 1, exponent);
      this.cumulative[rank] = total;
    }
    this.total = total;
  }

  /** share returns the probability of the `top` most frequent ranks together. */
  share(top) {
    return this.cumulative[Math.min(top, this.cumulative.length) - 1] / this.total;
  }

  sample(random) {
    return searchCumulative(this.cumulative, random() * this.total);
  }
}
