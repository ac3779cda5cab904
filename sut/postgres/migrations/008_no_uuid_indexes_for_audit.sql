-- Two indexes go (capacity, docs/performance.md, "Eighth pass"): postings by
-- transaction id and settlement_outbox by transaction id. No statement of the
-- pipeline reads either table by transaction id: the worker inserts, the
-- relay claims outbox rows by id through settlement_outbox_unpublished, and
-- the auditor reads each table whole. Both were keyed by a random uuid, so
-- every insert (two postings and one outbox row per settled transaction) and
-- every relay update of an outbox row (not a HOT update: published_at is in
-- the partial index's predicate) wrote to a random leaf page, which the
-- vacuum then scanned whole; past a few minutes of load those pages no
-- longer fit in shared_buffers. A deployment that looks postings up by
-- transaction (a support screen, say) adds the index back.
DROP INDEX IF EXISTS postings_by_transaction;
DROP INDEX IF EXISTS settlement_outbox_by_transaction;
