-- Varta's first tables. Migrations are append-only: change the schema with a new file.

CREATE TABLE sites (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cameras (
    id              text PRIMARY KEY,
    site_id         text NOT NULL REFERENCES sites (id),
    name            text NOT NULL,
    -- Never holds credentials: the config refuses them in URLs.
    url             text NOT NULL,
    credentials_ref text,
    analysis_fps    double precision NOT NULL,
    classes         text[] NOT NULL,
    min_score       real NOT NULL,
    enabled         boolean NOT NULL,
    -- Set when a camera disappears from the config; its history stays.
    removed_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every state transition of every camera: the source of uptime and outage history.
CREATE TABLE camera_status (
    camera_id   text NOT NULL REFERENCES cameras (id),
    at          timestamptz NOT NULL,
    state       text NOT NULL CHECK (state IN ('starting', 'streaming', 'backing_off', 'stopped')),
    reason      text NOT NULL,
    node        text NOT NULL
);
CREATE INDEX camera_status_camera_at ON camera_status (camera_id, at DESC);

-- One row per tracked object. The id is a UUIDv7 made by the node, so writing the
-- same event again (its end, or a replay) updates the row instead of adding one.
CREATE TABLE events (
    id            uuid PRIMARY KEY,
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
    written_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_started ON events (started_at DESC, id DESC);
CREATE INDEX events_camera_started ON events (camera_id, started_at DESC);
CREATE INDEX events_class_started ON events (class, started_at DESC);
