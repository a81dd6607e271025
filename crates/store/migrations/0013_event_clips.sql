-- Issue #22: each event's video clip (the camera's own bitstream around the event,
-- remuxed to MP4 without re-encoding) and the SHA-256 of the file as it was written.
ALTER TABLE events ADD COLUMN clip text;
-- (No CHECK on the hash: a record the schema refused would hold the event log's
-- writer on it forever; the hash is computed by varta_ingest::clip::write_mp4.)
ALTER TABLE events ADD COLUMN clip_sha256 text;
ALTER TABLE events ADD COLUMN clip_bytes bigint;
ALTER TABLE events ADD COLUMN clip_secs double precision;
