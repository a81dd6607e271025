-- Issue #22: integrity at write time. The SHA-256 of each event's snapshot and crop
-- as they were written (the clip's is 0013's clip_sha256), and the manifest the
-- node signed over the event's ids, times and hashes (varta_store::evidence): its
-- exact bytes, its Ed25519 signature (base64) and the signing key's id.
ALTER TABLE events ADD COLUMN snapshot_sha256 text;
ALTER TABLE events ADD COLUMN crop_sha256 text;
ALTER TABLE events ADD COLUMN manifest text;
ALTER TABLE events ADD COLUMN manifest_sig text;
ALTER TABLE events ADD COLUMN manifest_key text;

-- Each node's public key, registered when the node first starts with it. Keys are
-- never changed or removed (exports signed with an old key stay verifiable), so the
-- runtime role may add a key but not replace one: a key registered after an event
-- began cannot have signed it (`varta evidence verify` checks that).
CREATE TABLE node_keys (
    key_id        text PRIMARY KEY,
    node          text NOT NULL,
    public_key    text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON node_keys FROM varta_runtime;
GRANT SELECT, INSERT ON node_keys TO varta_runtime;
