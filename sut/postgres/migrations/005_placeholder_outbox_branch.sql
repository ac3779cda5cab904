-- Placeholder so that this branch's migration 006 applies (tern refuses a
-- gap in the sequence): migration 005 belongs to another branch. THE MERGER
-- DELETES THIS FILE when that branch's 005 lands.
SELECT 1;
