-- The transactional outbox and the settlement consumer's table
-- (docs/settlement.md).
--
-- settlement_outbox: one row per settled transaction, written by the worker
-- in the transaction that writes the postings (a rejected transaction has
-- none). The relay publishes unpublished rows to the ledger.settlements topic
-- and then sets published_at; rows are kept after publishing, so the audit
-- can count one event per settled transaction (growth: one row per settled
-- transaction, like postings; a deployment that must bound it deletes rows
-- published long ago once they have been audited).
CREATE TABLE settlement_outbox (
    id                     bigserial   PRIMARY KEY,
    transaction_id         uuid        NOT NULL,
    kind                   text        NOT NULL,
    source_account_id      bigint      NOT NULL,
    destination_account_id bigint      NOT NULL,
    amount                 bigint      NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    published_at           timestamptz
);
-- The relay's work queue: only unpublished rows, in id order.
CREATE INDEX settlement_outbox_unpublished ON settlement_outbox (id) WHERE published_at IS NULL;
CREATE INDEX settlement_outbox_by_transaction ON settlement_outbox (transaction_id);

-- settlement_history: the settlement consumer's effect, one row per settled
-- transaction, written with the consumer's offset of the settlements topic
-- (consumer_offsets, topic ledger.settlements) in one transaction. The
-- unique transaction id is the dedupe: an event published twice (the relay
-- is at least once) has one effect.
CREATE TABLE settlement_history (
    id                     bigserial   PRIMARY KEY,
    transaction_id         uuid        NOT NULL,
    kind                   text        NOT NULL,
    source_account_id      bigint      NOT NULL,
    destination_account_id bigint      NOT NULL,
    amount                 bigint      NOT NULL,
    kafka_partition        integer     NOT NULL,
    kafka_offset           bigint      NOT NULL,
    settled_at             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX settlement_history_transaction ON settlement_history (transaction_id);
