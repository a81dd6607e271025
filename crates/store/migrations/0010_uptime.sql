-- Issue #21: a camera's uptime counts from when it was first configured, not from the
-- first of the month (time before a camera existed is not downtime).
ALTER TABLE cameras ADD COLUMN created_at timestamptz;
-- Cameras configured before this migration: their first recorded state, else their
-- last configuration.
UPDATE cameras c SET created_at = LEAST(c.updated_at,
    COALESCE((SELECT min(s.at) FROM camera_status s WHERE s.camera_id = c.id), c.updated_at));
ALTER TABLE cameras ALTER COLUMN created_at SET DEFAULT now();
ALTER TABLE cameras ALTER COLUMN created_at SET NOT NULL;

-- Planned maintenance: time a camera (or every camera of a site) is out of service on
-- purpose. It counts neither as up nor as down in uptime (store::uptime).
CREATE TABLE maintenance_windows (
    id          bigserial PRIMARY KEY,
    site_id     text NOT NULL REFERENCES sites (id),
    -- NULL: every camera of the site
    camera_id   text REFERENCES cameras (id),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX maintenance_windows_time ON maintenance_windows (site_id, starts_at, ends_at);

-- An acknowledgement says what came of the alert, and may say more.
ALTER TABLE alerts ADD COLUMN ack_outcome text CHECK (ack_outcome IN ('false_alarm', 'dispatched', 'other'));
ALTER TABLE alerts ADD COLUMN ack_comment text CHECK (length(ack_comment) <= 1000);
