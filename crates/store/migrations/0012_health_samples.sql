-- Issue #21: health over time for the console: each node writes one row for itself
-- and one per camera it holds every `[node] sample_secs` (default 60); rows older
-- than two days are deleted by the node that samples (store::samples).
CREATE TABLE node_samples (
    node_id       uuid NOT NULL,
    node          text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    -- camera leases held, and the most the node may hold
    cameras       integer NOT NULL,
    capacity      integer NOT NULL,
    -- frames per second over the interval, every camera of the node together
    decoded_fps   real NOT NULL,
    analysed_fps  real NOT NULL,
    -- the process's CPU time over the interval, percent of one core
    cpu_percent   real NOT NULL,
    PRIMARY KEY (node_id, at)
);
CREATE INDEX node_samples_at ON node_samples (at);

CREATE TABLE camera_samples (
    camera_id      text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    node           text NOT NULL,
    -- over the interval: frames received per second, kilobits per second received,
    -- decoder and stream errors, frames analysed per second
    fps            real NOT NULL,
    kbps           real NOT NULL,
    decode_errors  integer NOT NULL,
    analysed_fps   real NOT NULL,
    PRIMARY KEY (camera_id, at)
);
CREATE INDEX camera_samples_at ON camera_samples (at);
