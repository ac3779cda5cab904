-- The postings' two foreign keys go (capacity, docs/performance.md): each
-- posting row ran two referential checks, each a query and a row lock, the
-- external account's row share-locked by every deposit and withdrawal of
-- every partition. Side by side at 2,500 and 3,600 TPS they were about a
-- third of Postgres's CPU per request. What they guarded still holds:
-- - the worker (and ApplyOne, the gateway's naive mode) writes a
--   transaction's row and its postings in one database transaction, to
--   accounts it has just read and locked in that transaction (or the
--   external account this schema creates), and accounts are never deleted;
-- - the auditor checks every posting against the ledger it reads: a posting
--   of no transaction violates conservation, a posting on an account the
--   accounts table does not list violates balance-equals-postings
--   (invariants/audit.go; tested in invariants/audit_test.go).
ALTER TABLE postings DROP CONSTRAINT IF EXISTS postings_transaction_id_fkey;
ALTER TABLE postings DROP CONSTRAINT IF EXISTS postings_account_id_fkey;
