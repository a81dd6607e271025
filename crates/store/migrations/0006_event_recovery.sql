-- Issue #15: why an event ended, and which process made it, so that the events a
-- dead process left open are closed by its next start or by the node that takes
-- its cameras over.

-- `ended` (the rule's own end), `node_stopped` (the node stopped analysing the
-- camera), `node_lost` (the process died; closed by recovery at last_seen_at),
-- `camera_lost` (the camera stopped sending pictures). NULL while open, and on rows
-- that ended before this migration (the API reads those as `ended`; rewriting every
-- old row here would rewrite the whole table).
ALTER TABLE events ADD COLUMN end_reason text
    CHECK (end_reason IN ('ended', 'node_stopped', 'node_lost', 'camera_lost'));

-- The `nodes.id` of the process that made the event (one per process start); not a
-- foreign key: a node that starts while PostgreSQL is down records events before
-- its row exists.
ALTER TABLE events ADD COLUMN run_id uuid;

-- Recovery looks for open events (by node, or by camera, of other processes); open
-- events are few, so one partial index serves both. Keyed by run_id: every insert of
-- one process has the same key, which btree deduplication makes cheap (two partial
-- indexes keyed by node and camera cost 16% of the writer's rate, this one ~2%;
-- bench/store-writer.sh).
CREATE INDEX events_open ON events (run_id) WHERE ended_at IS NULL;

-- Why a node's row was closed: `shutdown` (clean stop), `lost` (found dead by its
-- next start under the same name, or by the node that took its leases).
ALTER TABLE nodes ADD COLUMN stop_reason text;
