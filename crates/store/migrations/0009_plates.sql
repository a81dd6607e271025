-- Issue #20: number plates read on vehicle tracks, wanted-vehicle watchlists, and
-- the alerts a listed plate raises through the existing path (trigger, NOTIFY, SSE,
-- MQTT, webhooks).

-- Partial and fuzzy search over plates (trusted extension: the database owner may
-- create it; Debian's postgresql-contrib ships it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per vehicle track whose plate was read: the vote over the track's best
-- crops. Partitioned by the UTC day of its event's start, like events, so retention
-- drops a day of plates with the day of events (varta_drop_event_partition).
CREATE TABLE plate_reads (
    id                uuid NOT NULL,
    event_id          uuid NOT NULL,
    event_started_at  timestamptz NOT NULL,
    camera_id         text NOT NULL REFERENCES cameras (id),
    site_id           text NOT NULL REFERENCES sites (id),
    track_id          bigint NOT NULL,
    -- when the best read's frame was captured
    read_at           timestamptz NOT NULL,
    -- the best single read as the reader gave it (normalised Latin)
    text              text NOT NULL,
    -- the voted plate, normalised Latin (varta_core::plate::normalise): searched and matched
    plate             text NOT NULL,
    -- ua_civil | ua_civil_1995 | other
    format            text NOT NULL,
    confidence        real NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    reads             integer NOT NULL,
    -- the plate in camera pixels: left, top, right, bottom
    bbox              real[] NOT NULL CHECK (cardinality(bbox) = 4),
    -- JPEG of the plate in the snapshot directory
    crop              text,
    node              text NOT NULL,
    written_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, event_started_at)
) PARTITION BY RANGE (event_started_at);
CREATE INDEX plate_reads_plate_read_at ON plate_reads (plate, read_at);
CREATE INDEX plate_reads_read_at ON plate_reads (read_at DESC);
CREATE INDEX plate_reads_plate_trgm ON plate_reads USING gin (plate gin_trgm_ops);
-- One plate row per event: a replayed record is recognised.
CREATE UNIQUE INDEX plate_reads_event ON plate_reads (event_id, event_started_at);

-- Wanted plates. An entry matches reads of its plate exactly or within one OCR
-- confusion (varta_plate_match). Entries are never deleted, only removed
-- (removed_at, removed_by), so an alert can always show why it was raised.
CREATE TABLE watchlist_entries (
    id          bigserial PRIMARY KEY,
    -- normalised Latin
    plate       text NOT NULL CHECK (plate ~ '^[A-Z0-9]{2,12}$'),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    added_by    text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    removed_by  text,
    removed_at  timestamptz,
    removed_reason text
);
CREATE UNIQUE INDEX watchlist_entries_active ON watchlist_entries (plate) WHERE removed_at IS NULL;

-- Which alert came from which plate read and entry.
ALTER TABLE alerts ADD COLUMN plate_read_id uuid;
ALTER TABLE alerts ADD COLUMN plate text;
ALTER TABLE alerts ADD COLUMN watchlist_entry_id bigint REFERENCES watchlist_entries (id);

-- 'exact', 'confusion' (one character differs, by a pair OCR confuses on plates:
-- varta_core::plate::CONFUSIONS, kept equal by a unit test) or NULL.
CREATE FUNCTION varta_plate_match(read text, listed text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    pairs constant text[] := ARRAY['0O', '0D', 'OD', '8B', '1I', '5S', '2Z', '6G', '7T', '4A'];
    diff int := 0;
    a text;
    b text;
BEGIN
    IF read = listed THEN
        RETURN 'exact';
    END IF;
    IF length(read) <> length(listed) OR length(read) = 0 THEN
        RETURN NULL;
    END IF;
    FOR i IN 1 .. length(read) LOOP
        a := substr(read, i, 1);
        b := substr(listed, i, 1);
        IF a <> b THEN
            diff := diff + 1;
            IF diff > 1 OR NOT (a || b = ANY (pairs) OR b || a = ANY (pairs)) THEN
                RETURN NULL;
            END IF;
        END IF;
    END LOOP;
    RETURN 'confusion';
END $$;

-- A plate read that matches an active entry raises one alert for its event (the
-- vehicle's passage), in the transaction that stores the read, announced like every
-- other alert. Exact matches win over confusions; the oldest entry over newer ones.
CREATE FUNCTION varta_plate_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    new_id bigint;
BEGIN
    SELECT w.id INTO entry FROM watchlist_entries w
     WHERE w.removed_at IS NULL AND (w.expires_at IS NULL OR w.expires_at > now())
       AND varta_plate_match(NEW.plate, w.plate) IS NOT NULL
     ORDER BY varta_plate_match(NEW.plate, w.plate) = 'exact' DESC, w.id
     LIMIT 1;
    IF entry IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO alerts (event_id, event_started_at, camera_id, rule, plate_read_id, plate, watchlist_entry_id)
    VALUES (NEW.event_id, NEW.event_started_at, NEW.camera_id, 'watchlist', NEW.id, NEW.plate, entry)
    ON CONFLICT (event_id, rule) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NOT NULL THEN
        PERFORM pg_notify('varta_alerts', json_build_object('alert', new_id)::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER plate_reads_raise_alert AFTER INSERT ON plate_reads
    FOR EACH ROW EXECUTE FUNCTION varta_plate_alert();

-- A day's partition of events now comes with the same day's partition of plates, and
-- goes with it.
CREATE OR REPLACE FUNCTION varta_event_partition(day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    name text := 'events_' || to_char(day, 'YYYYMMDD');
    plates text := 'plate_reads_' || to_char(day, 'YYYYMMDD');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('varta_event_partition'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END IF;
    IF to_regclass(plates) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF plate_reads FOR VALUES FROM (%L) TO (%L)',
            plates, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END IF;
    RETURN name;
END $$;

CREATE OR REPLACE FUNCTION varta_drop_event_partition(name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    plates text := 'plate_reads_' || substr(name, 8);
BEGIN
    IF name !~ '^events_[0-9]{8}$' OR NOT EXISTS (
        SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'events'::regclass AND c.relname = name) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'plate_reads'::regclass AND c.relname = plates) THEN
        EXECUTE format('DROP TABLE %I', plates);
    END IF;
    EXECUTE format('DROP TABLE %I', name);
    RETURN true;
END $$;

-- Every existing day of events gets its day of plates.
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'events'::regclass LOOP
        PERFORM varta_event_partition(to_date(substr(r.relname, 8), 'YYYYMMDD'));
    END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE ON plate_reads, watchlist_entries TO varta_runtime;
GRANT USAGE, SELECT ON SEQUENCE watchlist_entries_id_seq TO varta_runtime;
