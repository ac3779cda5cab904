-- Placeholder for migration 006 (the outbox branch's 006_outbox_and_settlements.sql),
-- so that 007 loads on a main without it. Deleted when main with 006 is merged.
SELECT 1;
