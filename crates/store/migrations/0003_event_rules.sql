-- Issue #5: events come from rules. An event is one rule firing on one track (or,
-- for a `count` rule, on a group); `rule` names it, `zone` is its zone or line,
-- `snapshot` the JPEG file in the node's snapshot directory (the crop is next to
-- it, `<id>.crop.jpg`).
ALTER TABLE events ADD COLUMN rule text NOT NULL DEFAULT 'presence';
ALTER TABLE events ADD COLUMN zone text;
ALTER TABLE events ADD COLUMN snapshot text;
CREATE INDEX events_rule_started ON events (rule, started_at DESC);
