-- Issue #6: events partitioned by day, nodes and camera leases, and the tables the
-- API and console need (alerts, maintenance tasks, users, tokens, audit, benchmarks).

-- Events: one partition per UTC day of `started_at`, created ahead by the service
-- (`varta_event_partition`) and dropped whole by retention. A partitioned table's
-- key must hold the partition column, so the key is (id, started_at); an event's
-- started_at never changes between its records, so the upsert still finds the row.
ALTER TABLE events RENAME TO events_v1;
ALTER INDEX events_pkey RENAME TO events_v1_pkey;
ALTER INDEX events_started RENAME TO events_v1_started;
ALTER INDEX events_camera_started RENAME TO events_v1_camera_started;
ALTER INDEX events_class_started RENAME TO events_v1_class_started;
ALTER INDEX events_rule_started RENAME TO events_v1_rule_started;

CREATE TABLE events (
    id            uuid NOT NULL,
    camera_id     text NOT NULL REFERENCES cameras (id),
    track_id      bigint NOT NULL,
    class         text NOT NULL,
    score         real NOT NULL,
    -- left, top, right, bottom in source pixels
    bbox          real[] NOT NULL CHECK (cardinality(bbox) = 4),
    started_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    ended_at      timestamptz,
    frames        integer NOT NULL,
    node          text NOT NULL,
    rule          text NOT NULL DEFAULT 'presence',
    zone          text,
    snapshot      text,
    written_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX events_started ON events (started_at DESC, id DESC);
CREATE INDEX events_camera_started ON events (camera_id, started_at DESC);
CREATE INDEX events_class_started ON events (class, started_at DESC);
CREATE INDEX events_rule_started ON events (rule, started_at DESC);

-- Creates the partition holding UTC day `day` if it is missing; returns its name.
-- Serialised by an advisory lock so that two nodes may call it at once.
CREATE FUNCTION varta_event_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'events_' || to_char(day, 'YYYYMMDD');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('varta_event_partition'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END IF;
    RETURN name;
END $$;

DO $$
DECLARE d date;
BEGIN
    FOR d IN SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM events_v1 LOOP
        PERFORM varta_event_partition(d);
    END LOOP;
END $$;
INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, ended_at, frames,
                    node, rule, zone, snapshot, written_at)
SELECT id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, ended_at, frames,
       node, rule, zone, snapshot, written_at FROM events_v1;
DROP TABLE events_v1;

-- Status transitions are written again when a spooled batch is replayed after a
-- crash: the same transition must then be recognised, not added twice.
DELETE FROM camera_status a USING camera_status b
    WHERE a.ctid > b.ctid AND a.camera_id = b.camera_id AND a.at = b.at AND a.state = b.state;
CREATE UNIQUE INDEX camera_status_once ON camera_status (camera_id, at, state);

-- One row per running `varta serve` process (a restart is a new row): the
-- heartbeat says it is alive, the capacity how many cameras it may hold.
CREATE TABLE nodes (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL DEFAULT now(),
    capacity        integer NOT NULL CHECK (capacity > 0),
    api_addr        text,
    version         text NOT NULL,
    -- Set on a clean shutdown, after its leases are handed back.
    stopped_at      timestamptz
);
CREATE INDEX nodes_live ON nodes (last_heartbeat) WHERE stopped_at IS NULL;

-- The current holder of each camera: a row per camera (written by config sync), with
-- node_id null while the camera is free. Claimed with SELECT … FOR UPDATE SKIP LOCKED.
CREATE TABLE camera_leases (
    camera_id    text PRIMARY KEY REFERENCES cameras (id),
    node_id      uuid REFERENCES nodes (id),
    acquired_at  timestamptz,
    expires_at   timestamptz,
    CHECK ((node_id IS NULL) = (expires_at IS NULL))
);

-- Every holding of every lease, from claim to hand-back or expiry. The partial
-- unique index lets the database itself refuse two open holdings of one camera.
CREATE TABLE camera_lease_log (
    id              bigserial PRIMARY KEY,
    camera_id       text NOT NULL REFERENCES cameras (id),
    node_id         uuid NOT NULL REFERENCES nodes (id),
    acquired_at     timestamptz NOT NULL,
    released_at     timestamptz,
    -- shutdown | rebalance | removed | expired | lost
    release_reason  text
);
CREATE INDEX camera_lease_log_camera ON camera_lease_log (camera_id, acquired_at);
CREATE UNIQUE INDEX camera_lease_log_open ON camera_lease_log (camera_id) WHERE released_at IS NULL;

-- An event that matched an alert rule, and who acknowledged it. No foreign key to
-- events: retention drops event partitions whole.
CREATE TABLE alerts (
    id                bigserial PRIMARY KEY,
    event_id          uuid NOT NULL,
    event_started_at  timestamptz NOT NULL,
    camera_id         text NOT NULL REFERENCES cameras (id),
    rule              text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    acked_by          text,
    acked_at          timestamptz,
    UNIQUE (event_id, rule)
);
CREATE INDEX alerts_created ON alerts (created_at DESC);
CREATE INDEX alerts_unacked ON alerts (created_at DESC) WHERE acked_at IS NULL;

CREATE TABLE maintenance_tasks (
    id           bigserial PRIMARY KEY,
    site_id      text NOT NULL REFERENCES sites (id),
    camera_id    text REFERENCES cameras (id),
    -- offline | frozen | blackout | low_fps | decode_errors | other
    kind         text NOT NULL,
    reason       text NOT NULL,
    state        text NOT NULL DEFAULT 'open'
                 CHECK (state IN ('open', 'assigned', 'in_progress', 'resolved', 'verified')),
    assignee     text,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    due_at       timestamptz,
    resolved_at  timestamptz,
    verified_at  timestamptz,
    notes        text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- One open task per camera and reason.
CREATE UNIQUE INDEX maintenance_tasks_one_open ON maintenance_tasks (camera_id, kind)
    WHERE state IN ('open', 'assigned', 'in_progress');
CREATE INDEX maintenance_tasks_site_open ON maintenance_tasks (site_id, opened_at DESC)
    WHERE state <> 'verified';

CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    role           text NOT NULL CHECK (role IN ('operator', 'contractor', 'admin')),
    -- argon2id PHC string
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- Login sessions and machine tokens. Only a SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id),
    kind          text NOT NULL CHECK (kind IN ('session', 'machine')),
    token_hash    bytea NOT NULL UNIQUE,
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Who did what, when, from where. Append-only: the trigger refuses changes.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text,
    action   text NOT NULL,
    target   text,
    address  inet,
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at DESC);
CREATE FUNCTION varta_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION varta_audit_append_only();

CREATE TABLE bench_runs (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    node         text NOT NULL,
    kind         text NOT NULL,
    params       jsonb NOT NULL DEFAULT '{}',
    results      jsonb NOT NULL DEFAULT '{}',
    version      text NOT NULL
);
CREATE INDEX bench_runs_started ON bench_runs (started_at DESC);
