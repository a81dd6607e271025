-- Issue #7: alerts raised by the database itself, delivered by LISTEN/NOTIFY;
-- maintenance tasks that know when their camera came back; login throttling read
-- from the audit log.

-- Whether the event's rule makes alerts (set by the node from the rule's config).
ALTER TABLE events ADD COLUMN alert boolean NOT NULL DEFAULT false;

-- An alerting event raises its alert in the same transaction that first stores it,
-- so an alert exists exactly when its event is committed, once (a replayed or
-- updated event is not an INSERT, and UNIQUE (event_id, rule) holds anyway). The
-- notification is delivered at commit to every listening API process; its payload
-- is only the alert id, each process reads the row itself.
CREATE FUNCTION varta_raise_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO alerts (event_id, event_started_at, camera_id, rule)
    VALUES (NEW.id, NEW.started_at, NEW.camera_id, NEW.rule)
    ON CONFLICT (event_id, rule) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NOT NULL THEN
        PERFORM pg_notify('varta_alerts', json_build_object('alert', new_id)::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER events_raise_alert AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.alert) EXECUTE FUNCTION varta_raise_alert();

CREATE INDEX alerts_camera_created ON alerts (camera_id, created_at DESC);

-- Tasks: who opened one, since when the trouble lasts, when the camera came back,
-- and whether someone marked it resolved while the camera was still down.
ALTER TABLE maintenance_tasks ADD COLUMN opened_by text NOT NULL DEFAULT 'system';
ALTER TABLE maintenance_tasks ADD COLUMN trouble_since timestamptz;
ALTER TABLE maintenance_tasks ADD COLUMN recovered_at timestamptz;
ALTER TABLE maintenance_tasks ADD COLUMN resolved_while_down boolean NOT NULL DEFAULT false;
ALTER TABLE maintenance_tasks ADD COLUMN resolved_by text;
ALTER TABLE maintenance_tasks ADD COLUMN verified_by text;
CREATE INDEX maintenance_tasks_camera ON maintenance_tasks (camera_id, opened_at DESC);

-- Failed logins are counted from the audit log (shared by every API process).
CREATE INDEX audit_log_action_at ON audit_log (action, at DESC);

-- Deliveries of alerts to the optional sinks (MQTT, webhooks). Every API process
-- hears every alert; the first to insert the row delivers it, so a sink gets each
-- alert from one process only.
CREATE TABLE alert_deliveries (
    alert_id      bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    sink          text NOT NULL,
    claimed_by    text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    delivered_at  timestamptz,
    last_error    text,
    PRIMARY KEY (alert_id, sink)
);
