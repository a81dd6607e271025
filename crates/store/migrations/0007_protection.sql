-- Issue #17: protection that holds when the application's own database role is
-- the attacker's foothold.
--
-- Two roles. The role that runs these migrations owns every table (the *owner*);
-- the processes (`varta serve`, `varta api`, `varta user`) connect as a *runtime*
-- role that is a member of the group role `varta_runtime`, which gets only the
-- privileges below: it cannot TRUNCATE, ALTER, DROP or disable a trigger on
-- anything, and on the audit log it may only INSERT and SELECT.
-- docs/OPERATIONS.md ("Database roles") says how to create the runtime login role.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'varta_runtime') THEN
        CREATE ROLE varta_runtime NOLOGIN;
    END IF;
EXCEPTION
    -- Two databases of one cluster migrated at once both saw it missing.
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'the group role varta_runtime is missing and this role may not create it'
            USING HINT = 'as a superuser: CREATE ROLE varta_runtime NOLOGIN; then GRANT it to the runtime '
                         'login role (docs/OPERATIONS.md, "Database roles"), and migrate again';
END $$;

GRANT USAGE ON SCHEMA public TO varta_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO varta_runtime;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO varta_runtime;
-- Tables and partitions the owner makes later (the partition function below runs as
-- the owner) get the same.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO varta_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO varta_runtime;
-- The runtime reads which migrations are applied, and changes none.
REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations FROM varta_runtime;
REVOKE UPDATE, DELETE ON audit_log FROM varta_runtime;

-- A node creates tomorrow's event partition and drops expired ones; both need the
-- owner's rights, so both run as the owner (SECURITY DEFINER with a fixed
-- search_path), and the drop takes only names of real event partitions.
ALTER FUNCTION varta_event_partition(date) SECURITY DEFINER SET search_path = public, pg_temp;

CREATE FUNCTION varta_drop_event_partition(name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF name !~ '^events_[0-9]{8}$' OR NOT EXISTS (
        SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'events'::regclass AND c.relname = name) THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', name);
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION varta_drop_event_partition(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION varta_drop_event_partition(text) TO varta_runtime;

-- The audit log: a second line against TRUNCATE (the owner's own mistakes), and a
-- hash chain, so that a row changed or removed even by the owner is found by
-- `varta audit verify`. Each row's hash is SHA-256 of the previous row's hash and
-- the row's fields as one JSON array; rows are chained in id order, which an
-- advisory lock held to the end of the inserting transaction makes the commit
-- order too (the trigger takes the id under the lock).
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION varta_audit_append_only();

ALTER TABLE audit_log ADD COLUMN prev_hash bytea;
ALTER TABLE audit_log ADD COLUMN hash bytea;

CREATE FUNCTION varta_audit_hash(prev bytea, id bigint, at timestamptz, actor text, action text,
                                 target text, address inet, detail jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(coalesce(prev, '\x'::bytea) || convert_to(json_build_array(
        id, (extract(epoch FROM at) * 1000000)::bigint, actor, action, target,
        address::text, detail)::text, 'UTF8'))
$$;

CREATE FUNCTION varta_audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('varta_audit_chain'));
    NEW.id := nextval('audit_log_id_seq');
    SELECT a.hash INTO last FROM audit_log a ORDER BY a.id DESC LIMIT 1;
    NEW.prev_hash := last;
    NEW.hash := varta_audit_hash(last, NEW.id, NEW.at, NEW.actor, NEW.action, NEW.target,
                                 NEW.address, NEW.detail);
    RETURN NEW;
END $$;

-- Rows written before this migration join the chain now.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
DO $$
DECLARE
    r record;
    last bytea;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        UPDATE audit_log SET prev_hash = last,
               hash = varta_audit_hash(last, r.id, r.at, r.actor, r.action, r.target, r.address, r.detail)
         WHERE id = r.id
        RETURNING hash INTO last;
    END LOOP;
END $$;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION varta_audit_chain();
-- The trigger takes the id; a default would take one more per row for nothing.
ALTER TABLE audit_log ALTER COLUMN id DROP DEFAULT;

-- Login attempts, reserved before the password is hashed: one row per (account,
-- address) and window. A login first increments `reserved` (one atomic upsert),
-- and checks the password only if that stays within `[api] login_max_failures`; a
-- success deletes the row. So parallel guesses get exactly that many checks, a
-- stranger's failures do not lock the owner out from another address, and refused
-- attempts only count up `throttled` here (the audit log gets one row per
-- account, address and window, with the count, when the window closes).
CREATE TABLE login_attempts (
    account       text NOT NULL,
    address       text NOT NULL,
    window_start  timestamptz NOT NULL DEFAULT now(),
    reserved      integer NOT NULL DEFAULT 0,
    throttled     integer NOT NULL DEFAULT 0,
    -- Whether the upsert that wrote the row last refused its attempt.
    last_refused  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (account, address)
);
CREATE INDEX login_attempts_window ON login_attempts (window_start);
GRANT SELECT, INSERT, UPDATE, DELETE ON login_attempts TO varta_runtime;

-- Revocations reach every API process at commit, on the alert channel (one
-- connection, so in commit order with the alerts): an open stream re-checks its
-- token before it sends anything more.
CREATE FUNCTION varta_notify_revocation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('varta_alerts', json_build_object('revoked', NEW.id)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER api_tokens_revoked AFTER UPDATE OF revoked_at ON api_tokens
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION varta_notify_revocation();
CREATE TRIGGER users_disabled AFTER UPDATE OF disabled_at ON users
    FOR EACH ROW WHEN (NEW.disabled_at IS NOT NULL AND OLD.disabled_at IS NULL)
    EXECUTE FUNCTION varta_notify_revocation();
CREATE TRIGGER users_password AFTER UPDATE OF password_hash ON users
    FOR EACH ROW WHEN (NEW.password_hash IS DISTINCT FROM OLD.password_hash)
    EXECUTE FUNCTION varta_notify_revocation();

CREATE INDEX api_tokens_user_live ON api_tokens (user_id) WHERE revoked_at IS NULL;
