//! PostgreSQL's binary `COPY` format, for the event columns.
//!
//! Binary rather than text so nothing is escaped or parsed twice; the layout is the
//! one of "Binary Format" in the `COPY` chapter of the PostgreSQL manual: a
//! signature, then per row a field count and per field a length (-1 for NULL) and
//! the type's wire representation (the `*send` functions), then a trailer.

use chrono::{DateTime, Utc};
use varta_core::event::EventRecord;

/// The columns, in the order [`encode_events`] writes them.
pub const EVENT_COLUMNS: &str =
    "id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, ended_at, frames, node, rule, zone, snapshot, \
     alert, end_reason, run_id";

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// `float4`'s type oid, written in array headers.
const FLOAT4_OID: u32 = 700;
/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Encodes `events` (with `node`) as a complete binary COPY stream.
pub fn encode_events<'a>(events: impl IntoIterator<Item = &'a EventRecord>, node: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 * 1024);
    b.extend_from_slice(SIGNATURE);
    b.extend_from_slice(&0i32.to_be_bytes()); // flags
    b.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for e in events {
        b.extend_from_slice(&17i16.to_be_bytes());
        field(&mut b, e.id.as_bytes());
        text(&mut b, e.camera.as_str());
        field(&mut b, &(e.track_id as i64).to_be_bytes());
        text(&mut b, &e.class);
        field(&mut b, &e.score.to_be_bytes());
        // real[] with one dimension of 4: ndim, has-null, element oid, length, lower bound.
        b.extend_from_slice(&(20 + 4 * 8i32).to_be_bytes());
        for v in [1i32, 0, FLOAT4_OID as i32, 4, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in e.bbox {
            field(&mut b, &v.to_be_bytes());
        }
        timestamp(&mut b, Some(e.started_at));
        timestamp(&mut b, Some(e.last_seen_at));
        timestamp(&mut b, e.ended_at);
        field(&mut b, &(e.frames as i32).to_be_bytes());
        text(&mut b, node);
        text(&mut b, &e.rule);
        opt_text(&mut b, e.zone.as_deref());
        opt_text(&mut b, e.snapshot.as_deref());
        field(&mut b, &[e.alert as u8]);
        opt_text(&mut b, e.end_reason.map(|r| r.as_str()));
        match &e.run_id {
            Some(id) => field(&mut b, id.as_bytes()),
            None => null(&mut b),
        }
    }
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b
}

fn field(b: &mut Vec<u8>, v: &[u8]) {
    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
    b.extend_from_slice(v);
}

fn null(b: &mut Vec<u8>) {
    b.extend_from_slice(&(-1i32).to_be_bytes());
}

fn text(b: &mut Vec<u8>, s: &str) {
    field(b, s.as_bytes());
}

fn opt_text(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(b, s),
        None => null(b),
    }
}

fn timestamp(b: &mut Vec<u8>, t: Option<DateTime<Utc>>) {
    match t {
        Some(t) => field(b, &(t.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes()),
        None => null(b),
    }
}
