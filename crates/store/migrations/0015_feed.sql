-- Issue #23: the NATS JetStream feed (varta_store::feed, varta_node::feed). What the
-- region's situation centre is sent is written to an outbox by the same transaction
-- that stores it, so nothing stored is missed and nothing is sent that was not
-- stored; a publisher sends the outbox to JetStream and deletes what was acked.
-- While NATS is away the outbox is the spool (and the node's event log stays the
-- spool for a PostgreSQL outage, as before).

-- The processes that publish the feed, each refreshing its row every minute. The
-- triggers below fill the outbox only while one was seen within a day, so a region
-- without a feed pays one small lookup per statement, and a feed taken out of the
-- config stops filling the outbox a day later (what is left is deleted by retention).
CREATE TABLE feed_publishers (
    node     text PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per message. kind: events | alerts | plates | status (the last token of
-- the subject). msg_id is JetStream's Nats-Msg-Id: the same change always has the
-- same id (`<event id>:started`, `<event id>:ended`, `alert:<id>`, `plate:<id>`,
-- `status:<camera>:<state>:<unix µs>`), so a message sent twice is stored once.
CREATE TABLE feed_outbox (
    seq         bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('events', 'alerts', 'plates', 'status')),
    site_id     text,
    camera_id   text NOT NULL,
    msg_id      text NOT NULL,
    payload     json NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feed_outbox_created ON feed_outbox (created_at);

CREATE FUNCTION varta_feed_on() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM feed_publishers WHERE seen_at > now() - interval '1 day')
$$;

-- An event's message: the row as the situation centre needs it, and the phase.
CREATE FUNCTION varta_feed_event(e events, site text, phase text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'kind', 'event', 'phase', phase, 'id', e.id, 'camera', e.camera_id, 'site', site,
        'node', e.node, 'class', e.class, 'rule', e.rule, 'zone', e.zone, 'track_id', e.track_id,
        'score', e.score, 'bbox', e.bbox, 'started_at', e.started_at, 'last_seen_at', e.last_seen_at,
        'ended_at', e.ended_at, 'end_reason', e.end_reason, 'frames', e.frames, 'alert', e.alert,
        'snapshot', e.snapshot IS NOT NULL)
$$;

-- One trigger function for every table: statement triggers with transition tables,
-- so one INSERT … SELECT per statement (a COPY of a whole batch included), not one
-- per row. plpgsql plans each branch when it first runs, so a branch naming
-- old_rows is never planned for an INSERT trigger.
CREATE FUNCTION varta_feed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT varta_feed_on() THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'events' AND TG_OP = 'INSERT' THEN
        -- An event first stored already ended (both records in one batch) sends both.
        INSERT INTO feed_outbox (kind, site_id, camera_id, msg_id, payload)
        SELECT 'events', c.site_id, r.camera_id, r.id || ':' || p.phase, varta_feed_event(r, c.site_id, p.phase)
          FROM new_rows r
          LEFT JOIN cameras c ON c.id = r.camera_id
         CROSS JOIN LATERAL (VALUES (1, 'started'), (2, 'ended')) AS p(o, phase)
         WHERE p.phase = 'started' OR r.ended_at IS NOT NULL
         ORDER BY r.started_at, r.id, p.o;
    ELSIF TG_TABLE_NAME = 'events' THEN
        -- The end of an event is the update that first sets ended_at (a replay of the
        -- end finds it set and sends nothing).
        INSERT INTO feed_outbox (kind, site_id, camera_id, msg_id, payload)
        SELECT 'events', c.site_id, r.camera_id, r.id || ':ended', varta_feed_event(r, c.site_id, 'ended')
          FROM new_rows r
          JOIN old_rows o ON o.id = r.id AND o.started_at = r.started_at
          LEFT JOIN cameras c ON c.id = r.camera_id
         WHERE o.ended_at IS NULL AND r.ended_at IS NOT NULL
         ORDER BY r.ended_at, r.id;
    ELSIF TG_TABLE_NAME = 'alerts' THEN
        INSERT INTO feed_outbox (kind, site_id, camera_id, msg_id, payload)
        SELECT 'alerts', c.site_id, a.camera_id, 'alert:' || a.id,
               json_build_object('kind', 'alert', 'id', a.id, 'event_id', a.event_id, 'camera', a.camera_id,
                                 'site', c.site_id, 'rule', a.rule, 'created_at', a.created_at, 'plate', a.plate,
                                 'watchlist_entry_id', a.watchlist_entry_id)
          FROM new_rows a
          LEFT JOIN cameras c ON c.id = a.camera_id
         ORDER BY a.id;
    ELSIF TG_TABLE_NAME = 'plate_reads' THEN
        INSERT INTO feed_outbox (kind, site_id, camera_id, msg_id, payload)
        SELECT 'plates', p.site_id, p.camera_id, 'plate:' || p.id,
               json_build_object('kind', 'plate', 'id', p.id, 'event_id', p.event_id, 'camera', p.camera_id,
                                 'site', p.site_id, 'read_at', p.read_at, 'plate', p.plate, 'text', p.text,
                                 'format', p.format, 'confidence', p.confidence, 'reads', p.reads, 'node', p.node)
          FROM new_rows p
         ORDER BY p.read_at, p.id;
    ELSE
        -- camera_status (ON CONFLICT DO NOTHING: a replayed transition is not inserted).
        INSERT INTO feed_outbox (kind, site_id, camera_id, msg_id, payload)
        SELECT 'status', c.site_id, s.camera_id,
               'status:' || s.camera_id || ':' || s.state || ':' || (extract(epoch FROM s.at) * 1000000)::bigint,
               json_build_object('kind', 'status', 'camera', s.camera_id, 'site', c.site_id, 'at', s.at,
                                 'state', s.state, 'reason', s.reason, 'node', s.node)
          FROM new_rows s
          LEFT JOIN cameras c ON c.id = s.camera_id
         ORDER BY s.at;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('varta_feed', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER events_feed_inserted AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION varta_feed();
CREATE TRIGGER events_feed_updated AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION varta_feed();
CREATE TRIGGER alerts_feed AFTER INSERT ON alerts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION varta_feed();
CREATE TRIGGER plate_reads_feed AFTER INSERT ON plate_reads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION varta_feed();
CREATE TRIGGER camera_status_feed AFTER INSERT ON camera_status
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION varta_feed();
