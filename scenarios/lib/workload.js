// The generator of mixed money operations shared by gate, capacity, soak, spike, retry-storm and hot-accounts:
// one iteration = one money operation (deposit, withdrawal or transfer), chosen by weight, on accounts chosen by
// a picker, with a random integer amount, recorded in the scenario metrics.

import exec from 'k6/execution';
import { UniformPicker, ZipfPicker, ownerSlotCount, ownerSlotOf, pickOther, pickOwned } from './accounts.js';
import { recordException, recordResult } from './metrics.js';
import { WeightedChoice, createRandom, mixSeed, randomInteger } from './random.js';

const KINDS = ['deposit', 'withdrawal', 'transfer'];

/** OperationMix picks the kind of the next operation with the configured weights (MIX). */
export class OperationMix {
  constructor(weights) {
    this.choice = new WeightedChoice(KINDS, KINDS.map((kind) => weights[kind] || 0));
  }

  pick(random) {
    return this.choice.pick(random);
  }
}

/** AmountGenerator draws integer amounts in minor units, uniformly in [min, max]. */
export class AmountGenerator {
  constructor(min, max) {
    if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 1 || min > max) {
      throw new Error(`AmountGenerator: need integers 1 <= min <= max, got ${min}, ${max}`);
    }
    this.min = min;
    this.max = max;
  }

  next(random) {
    return randomInteger(random, this.min, this.max);
  }
}

/**
 * Workload is one VU's generator state. It is built on the VU's first iteration, because it needs setup()'s data
 * (the accounts and the run seed) and the VU id, neither of which exists in the init context.
 */
export class Workload {
  /**
   * options.accountDistribution: "uniform" (default) or "zipf" (ZIPF_EXPONENT) for sources and destinations.
   * options.ownerSlots: a number, or a function of the scenario name, giving the VUs expected to run (see
   * accounts.js); ignored when config.ownership is false.
   */
  constructor(config, data, options = {}) {
    this.config = config;
    this.accounts = data.accounts;
    this.vuId = exec.vu.idInTest;
    this.random = createRandom(mixSeed(data.seed, this.vuId, 0x51ed));
    this.mix = new OperationMix(config.mix);
    this.amounts = new AmountGenerator(config.amountMin, config.amountMax);
    this.picker =
      options.accountDistribution === 'zipf'
        ? new ZipfPicker(this.accounts.length, config.zipfExponent, data.seed)
        : new UniformPicker(this.accounts.length);
    this.ownerSlots = options.ownerSlots;
  }

  slots() {
    const expected = typeof this.ownerSlots === 'function' ? this.ownerSlots(exec.scenario.name) : this.ownerSlots;
    return ownerSlotCount(this.accounts.length, expected || this.accounts.length, this.config.ownerSlots);
  }

  /** pickSource returns the index of the account the operation is ordered by (see accounts.js, Ownership). */
  pickSource() {
    if (this.config.ownership) {
      const slots = this.slots();
      const owned = pickOwned(this.random, ownerSlotOf(this.vuId, slots), slots, this.accounts.length);
      if (owned >= 0) {
        return owned;
      }
    }
    return this.picker.pick(this.random);
  }

  /** next describes the next operation without sending it. */
  next() {
    const kind = this.mix.pick(this.random);
    const source = this.pickSource();
    const operation = { kind, source, amount: this.amounts.next(this.random) };
    if (kind === 'transfer') {
      operation.destination = pickOther(this.picker, this.random, source, this.accounts.length);
    }
    return operation;
  }

  /** send issues the operation through the client (synchronously) and returns its OperationResult. */
  send(client, operation) {
    const account = this.accounts[operation.source];
    switch (operation.kind) {
      case 'deposit':
        return client.deposit(account, account.accountId, operation.amount);
      case 'withdrawal':
        return client.withdraw(account, account.accountId, operation.amount);
      case 'transfer':
        return client.transfer(
          account,
          account.accountId,
          this.accounts[operation.destination].accountId,
          operation.amount,
        );
      default:
        throw new Error(`unknown operation kind ${operation.kind}`);
    }
  }
}

let workload = null;

/** workloadFor returns this VU's Workload, creating it on first use (module state is per VU in k6). */
export function workloadFor(config, data, options = {}) {
  if (workload === null) {
    workload = new Workload(config, data, options);
  }
  return workload;
}

/**
 * mixedOperation is the body of one load iteration: pick, send, record. `tags` are added to the scenario metric
 * samples (spike adds the phase); it may also be a function (operation, workload) → tags, for tags that depend on
 * the operation picked (hot-accounts tags the heat of the source). options.record(result, tags) and
 * options.recordException(kind, tags) replace the scenario metrics' recordResult and recordException (capacity.js
 * records less: see steps.js). Returns { operation, result }.
 */
export function mixedOperation(client, config, data, options = {}, tags = {}) {
  const generator = workloadFor(config, data, options);
  const operation = generator.next();
  if (typeof tags === 'function') {
    tags = tags(operation, generator);
  }
  let result;
  try {
    result = generator.send(client, operation);
  } catch (error) {
    (options.recordException || recordException)(operation.kind, tags);
    throw error;
  }
  (options.record || recordResult)(result, tags);
  return { operation, result };
}
