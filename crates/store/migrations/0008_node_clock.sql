-- Issue #19: one clock for shared history. Each node measures how far its clock is
-- from the database's (database minus node, in milliseconds) at every lease tick,
-- stamps what two nodes compare in database time, and reports the difference here
-- (`GET /api/v1/nodes`).
ALTER TABLE nodes ADD COLUMN clock_offset_ms bigint;
