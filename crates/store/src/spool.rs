//! The on-disk spool: batches that could not reach PostgreSQL, kept in order until
//! they can.
//!
//! Layout: a folder of segment files `spool-NNNNNNNNNN.log`, appended to in order,
//! and a `cursor` file (`SEGMENT OFFSET`) saying how far replay has gone. A record is
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32 (IEEE) of the payload
//! payload JSON array of StoreMsg (one writer batch)
//! ```
//!
//! Every append is followed by `fdatasync`, so a batch the writer reported as
//! spooled survives a crash of the process or the machine. Replay reads from the
//! cursor and advances it only after the batch is committed; a crash between the
//! two replays the batch again, which the store's idempotent writes absorb.
//!
//! On open every segment is checked from the cursor on. A record cut short (the
//! process died in the middle of an append) or failing its CRC is reported (log and
//! `varta_spool_corrupt_records_total`); the bytes from there on are moved to a
//! `.corrupt` file next to the segment for inspection and the segment is cut back
//! to its last good record. Records before it are kept and replayed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use varta_core::event::StoreMsg;
use varta_core::{Error, ErrorKind};

/// A new segment is started once the current one is this large.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Largest payload accepted back from disk; anything larger is corruption.
const MAX_RECORD: u32 = 256 << 20;
const HEADER: usize = 8;

/// What opening a spool found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Good records waiting for replay.
    pub records: u64,
    /// Torn or corrupt records found (each cut off with what followed it).
    pub corrupt: u64,
    /// Bytes moved aside to `.corrupt` files.
    pub corrupt_bytes: u64,
}

/// One append-only spool folder. Owned by the store writer alone.
pub struct Spool {
    dir: PathBuf,
    /// Segment numbers present, oldest first.
    segments: Vec<u64>,
    /// The open file of the newest segment, for appends.
    tail: Option<(u64, File, u64)>,
    /// Replay position: segment number and byte offset.
    cursor: (u64, u64),
    /// Bytes not yet replayed.
    pending_bytes: u64,
    /// Records not yet replayed.
    pending_records: u64,
    /// Most bytes the spool may hold.
    max_bytes: u64,
    /// Held for the spool's life: two processes appending to one spool would
    /// interleave records.
    _lock: File,
}

fn io_err(what: String, e: io::Error) -> Error {
    Error::wrap(ErrorKind::Internal, what, e)
}

fn segment_name(n: u64) -> String {
    format!("spool-{n:010}.log")
}

impl Spool {
    /// Opens (creating) the spool in `dir`, checking what is there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spool, OpenReport), Error> {
        fs::create_dir_all(dir).map_err(|e| io_err(format!("creating spool folder {}", dir.display()), e))?;
        let lock = File::create(dir.join("lock")).map_err(|e| io_err(format!("locking {}", dir.display()), e))?;
        if lock.try_lock().is_err() {
            return Err(varta_core::err!(
                InvalidArgument,
                "spool folder {} is in use by another process (each node needs its own [store] spool_dir)",
                dir.display()
            ));
        }
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_err(format!("reading spool folder {}", dir.display()), e))? {
            let name = entry.map_err(|e| io_err("reading spool folder".into(), e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_prefix("spool-").and_then(|s| s.strip_suffix(".log")) {
                if let Ok(n) = n.parse::<u64>() {
                    segments.push(n);
                }
            }
        }
        segments.sort_unstable();
        let mut cursor = read_cursor(dir).unwrap_or((0, 0));
        // Segments wholly before the cursor were replayed; a crash left them behind.
        segments.retain(|&n| {
            if n < cursor.0 {
                let _ = fs::remove_file(dir.join(segment_name(n)));
                false
            } else {
                true
            }
        });
        if segments.first().is_some_and(|&n| n != cursor.0) {
            cursor = (segments[0], 0);
        }
        let mut report = OpenReport::default();
        let mut pending_bytes = 0;
        for &n in &segments {
            let path = dir.join(segment_name(n));
            let start = if n == cursor.0 { cursor.1 } else { 0 };
            let check = check_segment(&path, start)?;
            if let Some(bad_at) = check.bad_at {
                report.corrupt += 1;
                report.corrupt_bytes += check.len - bad_at;
                quarantine(&path, bad_at)?;
                tracing::error!(
                    segment = %path.display(), offset = bad_at, bytes = check.len - bad_at, good_records = check.records,
                    "spool: torn or corrupt record; the records before it are kept, the rest is moved to a .corrupt file"
                );
            }
            report.records += check.records;
            pending_bytes += check.good_end - start;
        }
        let spool = Spool {
            dir: dir.to_owned(),
            segments,
            tail: None,
            cursor,
            pending_bytes,
            pending_records: report.records,
            max_bytes,
            _lock: lock,
        };
        Ok((spool, report))
    }

    /// True when nothing waits for replay.
    pub fn is_empty(&self) -> bool {
        self.pending_records == 0
    }

    /// Bytes waiting for replay.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Records (batches) waiting for replay.
    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    /// True when another append would pass the cap.
    pub fn is_full(&self) -> bool {
        self.pending_bytes >= self.max_bytes
    }

    /// Appends one batch and syncs it to disk. Returns the bytes written.
    pub fn append(&mut self, batch: &[StoreMsg]) -> Result<u64, Error> {
        let payload = serde_json::to_vec(batch).map_err(|e| Error::wrap(ErrorKind::Internal, "encoding a batch", e))?;
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        if self.tail.as_ref().is_none_or(|(_, _, len)| *len >= SEGMENT_BYTES) {
            self.open_tail()?;
        }
        let (n, file, len) = self.tail.as_mut().expect("tail open");
        let what = || format!("appending to spool segment {}", segment_name(*n));
        file.write_all(&rec).map_err(|e| io_err(what(), e))?;
        file.sync_data().map_err(|e| io_err(what(), e))?;
        *len += rec.len() as u64;
        self.pending_bytes += rec.len() as u64;
        self.pending_records += 1;
        Ok(rec.len() as u64)
    }

    /// Opens the newest segment for appending, or starts a new one when there is
    /// none or it is full.
    fn open_tail(&mut self) -> Result<(), Error> {
        let n = match self.segments.last() {
            Some(&n) => {
                let len = fs::metadata(self.dir.join(segment_name(n))).map(|m| m.len()).unwrap_or(0);
                if len >= SEGMENT_BYTES || self.tail.as_ref().is_some_and(|t| t.0 == n) {
                    n + 1
                } else {
                    n
                }
            }
            None => self.cursor.0.max(1),
        };
        let path = self.dir.join(segment_name(n));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(format!("opening spool segment {}", path.display()), e))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if !self.segments.contains(&n) {
            self.segments.push(n);
            // The new file's name must survive a crash too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        if self.segments.len() == 1 && self.pending_records == 0 {
            self.cursor = (n, len);
        }
        self.tail = Some((n, file, len));
        Ok(())
    }

    /// Reads records from the cursor on until about `max_msgs` messages are read.
    /// Returns the batches and the position after them, to pass to
    /// [`Spool::commit`] once they are safely in the database.
    pub fn peek(&self, max_msgs: usize) -> Result<(Vec<StoreMsg>, ReplayPos), Error> {
        let mut out = Vec::new();
        let (mut seg, mut off) = self.cursor;
        let mut records = 0;
        let mut bytes = 0;
        'segments: for &n in self.segments.iter().filter(|&&n| n >= self.cursor.0) {
            if n != seg {
                seg = n;
                off = 0;
            }
            let path = self.dir.join(segment_name(n));
            let mut f = File::open(&path).map_err(|e| io_err(format!("opening {}", path.display()), e))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            f.seek(SeekFrom::Start(off)).map_err(|e| io_err(format!("reading {}", path.display()), e))?;
            let mut r = io::BufReader::with_capacity(1 << 20, f);
            while off < len {
                let Some(payload) = read_record(&mut r, len - off)? else {
                    // Appended to since open and cut short now: only possible if a
                    // write failed; stop here and let the next open sort it out.
                    break 'segments;
                };
                let msgs: Vec<StoreMsg> = serde_json::from_slice(&payload).map_err(|e| {
                    Error::wrap(ErrorKind::Internal, format!("decoding a record of {}", path.display()), e)
                })?;
                off += (HEADER + payload.len()) as u64;
                bytes += (HEADER + payload.len()) as u64;
                records += 1;
                out.extend(msgs);
                if out.len() >= max_msgs {
                    break 'segments;
                }
            }
        }
        Ok((out, ReplayPos { cursor: (seg, off), records, bytes }))
    }

    /// Moves the cursor past records returned by [`Spool::peek`], deleting segments
    /// that are fully replayed.
    pub fn commit(&mut self, pos: ReplayPos) -> Result<(), Error> {
        self.cursor = pos.cursor;
        self.pending_records -= pos.records;
        self.pending_bytes -= pos.bytes;
        write_cursor(&self.dir, self.cursor)?;
        let tail = self.tail.as_ref().map(|t| t.0);
        while let Some(&first) = self.segments.first() {
            let done = first < self.cursor.0 || (self.pending_records == 0 && Some(first) != tail);
            if !done {
                break;
            }
            let _ = fs::remove_file(self.dir.join(segment_name(first)));
            self.segments.remove(0);
        }
        if self.pending_records == 0 {
            // Everything is replayed: start afresh so the folder does not grow.
            if let Some((n, _, _)) = self.tail.take() {
                let _ = fs::remove_file(self.dir.join(segment_name(n)));
                self.segments.retain(|&s| s != n);
                self.cursor = (n + 1, 0);
                write_cursor(&self.dir, self.cursor)?;
            }
        }
        Ok(())
    }
}

/// Where replay will be after the records of one [`Spool::peek`].
#[derive(Clone, Copy, Debug)]
pub struct ReplayPos {
    cursor: (u64, u64),
    records: u64,
    bytes: u64,
}

/// Reads one record; `None` if it is cut short or fails its check.
fn read_record(r: &mut impl Read, room: u64) -> Result<Option<Vec<u8>>, Error> {
    if room < HEADER as u64 {
        return Ok(None);
    }
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h).map_err(|e| io_err("reading spool".into(), e))?;
    let len = u32::from_le_bytes(h[..4].try_into().unwrap());
    let crc = u32::from_le_bytes(h[4..].try_into().unwrap());
    if len > MAX_RECORD || HEADER as u64 + len as u64 > room {
        return Ok(None);
    }
    let mut payload = vec![0; len as usize];
    r.read_exact(&mut payload).map_err(|e| io_err("reading spool".into(), e))?;
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload))
}

struct SegmentCheck {
    len: u64,
    records: u64,
    good_end: u64,
    bad_at: Option<u64>,
}

fn check_segment(path: &Path, start: u64) -> Result<SegmentCheck, Error> {
    let what = || format!("checking spool segment {}", path.display());
    let mut f = File::open(path).map_err(|e| io_err(what(), e))?;
    let len = f.metadata().map_err(|e| io_err(what(), e))?.len();
    f.seek(SeekFrom::Start(start.min(len))).map_err(|e| io_err(what(), e))?;
    let mut r = io::BufReader::with_capacity(1 << 20, f);
    let (mut off, mut records) = (start.min(len), 0);
    while off < len {
        match read_record(&mut r, len - off)? {
            Some(p) => {
                off += (HEADER + p.len()) as u64;
                records += 1;
            }
            None => return Ok(SegmentCheck { len, records, good_end: off, bad_at: Some(off) }),
        }
    }
    Ok(SegmentCheck { len, records, good_end: off, bad_at: None })
}

/// Moves the bytes of `path` from `at` on into `path.corrupt-AT` and cuts `path`.
fn quarantine(path: &Path, at: u64) -> Result<(), Error> {
    let what = || format!("setting aside the corrupt tail of {}", path.display());
    let mut f = OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_err(what(), e))?;
    f.seek(SeekFrom::Start(at)).map_err(|e| io_err(what(), e))?;
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).map_err(|e| io_err(what(), e))?;
    let aside = PathBuf::from(format!("{}.corrupt-{at}", path.display()));
    fs::write(&aside, &rest).map_err(|e| io_err(what(), e))?;
    f.set_len(at).map_err(|e| io_err(what(), e))?;
    f.sync_all().map_err(|e| io_err(what(), e))?;
    Ok(())
}

fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let s = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Written by rename so a crash leaves the old or the new cursor, never half of one.
/// Not synced: an old cursor after a power cut only means records replayed twice,
/// which the store absorbs.
fn write_cursor(dir: &Path, cursor: (u64, u64)) -> Result<(), Error> {
    let tmp = dir.join("cursor.tmp");
    fs::write(&tmp, format!("{} {}\n", cursor.0, cursor.1)).map_err(|e| io_err("writing spool cursor".into(), e))?;
    fs::rename(&tmp, dir.join("cursor")).map_err(|e| io_err("writing spool cursor".into(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use varta_core::event::{CameraState, StatusChange};

    fn msg(i: u32) -> StoreMsg {
        StoreMsg::Status(StatusChange {
            camera: format!("cam-{i}").as_str().into(),
            at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
            state: CameraState::Streaming,
            reason: "ok".into(),
        })
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("varta-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn drain(s: &mut Spool) -> Vec<StoreMsg> {
        let mut all = Vec::new();
        while !s.is_empty() {
            let (m, pos) = s.peek(3).unwrap();
            all.extend(m);
            s.commit(pos).unwrap();
        }
        all
    }

    #[test]
    fn appends_replay_in_order_across_reopen() {
        let d = tmpdir("order");
        let (mut s, r) = Spool::open(&d, 1 << 30).unwrap();
        assert_eq!(r, OpenReport::default());
        for i in 0..5 {
            s.append(&[msg(i * 2), msg(i * 2 + 1)]).unwrap();
        }
        let (m, pos) = s.peek(4).unwrap();
        assert_eq!(m, vec![msg(0), msg(1), msg(2), msg(3)]);
        s.commit(pos).unwrap();
        drop(s);
        let (mut s, r) = Spool::open(&d, 1 << 30).unwrap();
        assert_eq!(r.records, 3);
        s.append(&[msg(10)]).unwrap();
        assert_eq!(drain(&mut s), (4..11).map(msg).collect::<Vec<_>>());
        assert!(s.is_empty());
        assert_eq!(s.pending_bytes(), 0);
        // Everything replayed: no segment is left behind.
        let logs =
            fs::read_dir(&d).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"));
        assert_eq!(logs.count(), 0);
        // And it goes on working.
        s.append(&[msg(20)]).unwrap();
        assert_eq!(drain(&mut s), vec![msg(20)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_tail_keeps_the_records_before_it() {
        let d = tmpdir("torn");
        let (mut s, _) = Spool::open(&d, 1 << 30).unwrap();
        for i in 0..3 {
            s.append(&[msg(i)]).unwrap();
        }
        drop(s);
        let seg = d.join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the fourth append: header and half a payload.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&200u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3, 4, b'[', b'{']).unwrap();
        drop(f);
        let (mut s, r) = Spool::open(&d, 1 << 30).unwrap();
        assert_eq!(r.records, 3);
        assert_eq!(r.corrupt, 1);
        assert_eq!(fs::metadata(&seg).unwrap().len(), len);
        assert!(d.join(format!("{}.corrupt-{len}", segment_name(1))).exists());
        // New appends go after the good records.
        s.append(&[msg(9)]).unwrap();
        assert_eq!(drain(&mut s), vec![msg(0), msg(1), msg(2), msg(9)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn flipped_byte_is_caught_by_the_crc() {
        let d = tmpdir("crc");
        let (mut s, _) = Spool::open(&d, 1 << 30).unwrap();
        let first = s.append(&[msg(0)]).unwrap();
        s.append(&[msg(1)]).unwrap();
        drop(s);
        let seg = d.join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        let i = first as usize + HEADER + 5;
        bytes[i] ^= 0x20;
        fs::write(&seg, bytes).unwrap();
        let (mut s, r) = Spool::open(&d, 1 << 30).unwrap();
        assert_eq!((r.records, r.corrupt), (1, 1));
        assert_eq!(drain(&mut s), vec![msg(0)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn cap_is_reported() {
        let d = tmpdir("cap");
        let (mut s, _) = Spool::open(&d, 200).unwrap();
        assert!(!s.is_full());
        while !s.is_full() {
            s.append(&[msg(0)]).unwrap();
        }
        assert!(s.pending_bytes() >= 200);
        let _ = fs::remove_dir_all(&d);
    }
}
