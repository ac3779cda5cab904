// Account pickers: which prepared account an operation uses. They return indexes into the accounts array that
// setup() prepared (data.accounts), never account ids, so they work for any system's ids.
//
// Ownership. The ledger promises that the debits of one account are applied in the order the client issued them
// (the per-account-order invariant). That order is only well defined for operations that did not overlap in
// time, so the scenarios make most debits of an account come from ONE VU, one after the other: account index i is
// owned by owner slot i % slots, and a VU with id v (exec.vu.idInTest, from 1) acts for slot (v - 1) % slots.
// An iteration picks its SOURCE (the debited account; for a deposit, the credited one, which orders deposits)
// among the accounts its VU owns. With slots = min(accounts, VUs) every account has an owner and, while no more
// VUs run than slots, exactly one. Whatever the overlap, the journal's per-account `seq` and the invoke/complete
// times of every operation carry the issue order to the auditor; ownership only makes that order strict for most
// pairs. See docs/scenarios.md.

import { ZipfDistribution, createRandom, mixSeed, shuffledIndexes } from './random.js';

/** UniformPicker picks any of `count` accounts with equal probability. */
export class UniformPicker {
  constructor(count) {
    this.count = count;
  }

  pick(random) {
    return Math.floor(random() * this.count);
  }
}

/**
 * ZipfPicker picks accounts with Zipf-skewed probability. Which accounts are hot is a permutation seeded by the
 * run's seed alone, so every VU agrees on the hot set (a VU-seeded permutation would spread the heat out again).
 */
export class ZipfPicker {
  constructor(count, exponent, runSeed) {
    this.count = count;
    this.distribution = new ZipfDistribution(count, exponent);
    this.accountOfRank = shuffledIndexes(count, createRandom(mixSeed(runSeed, 0x2f1b)));
    this.rankOfAccount = new Array(count);
    this.accountOfRank.forEach((account, rank) => {
      this.rankOfAccount[account] = rank;
    });
  }

  pick(random) {
    return this.accountOfRank[this.distribution.sample(random)];
  }

  /** rankOf returns 0 for the hottest account, count-1 for the coldest. */
  rankOf(index) {
    return this.rankOfAccount[index];
  }
}

/** ownerSlotCount is the number of owner slots: min(accounts, VUs expected to run), or OWNER_SLOTS. */
export function ownerSlotCount(accountCount, expectedVUs, override) {
  const slots = override !== undefined ? override : expectedVUs;
  return Math.max(1, Math.min(accountCount, slots));
}

/** ownerSlotOf maps a VU id (from 1) to its owner slot. */
export function ownerSlotOf(vuId, slots) {
  return (Math.max(1, vuId) - 1) % slots;
}

/**
 * pickOwned returns a random account index among those owned by `slot` (indexes slot, slot+slots, ... below
 * count), in O(1) and without building per-VU lists, so a VU can serve several scenarios with different slots.
 */
export function pickOwned(random, slot, slots, count) {
  if (slot >= count) {
    return -1;
  }
  const owned = Math.floor((count - 1 - slot) / slots) + 1;
  return slot + slots * Math.floor(random() * owned);
}

/** pickOther returns an index different from `excluded` using `picker`, walking to a neighbour on a collision. */
export function pickOther(picker, random, excluded, count) {
  const index = picker.pick(random);
  if (index !== excluded) {
    return index;
  }
  return (index + 1 + Math.floor(random() * (count - 1))) % count;
}
