//! The write-ahead log on local disk: every record the node makes passes through
//! it before PostgreSQL sees it, so a record is durable from the moment it is
//! synced here, whatever happens to the process or the database afterwards.
//!
//! Layout: a folder (`[store] spool_dir`) of segment files `spool-NNNNNNNNNN.log`,
//! appended to in order, and a `cursor` file (`SEGMENT OFFSET`) saying how far
//! PostgreSQL has taken them. A record is
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32 (IEEE) of the payload
//! payload a batch of StoreMsg (crate::record: binary format 1, or JSON)
//! ```
//!
//! (the framing of the spool of issue #6, whose JSON payloads still decode, so an
//! old spool is replayed as it is).
//! [`Wal::append`] writes a group of records with one `write` and one `fdatasync`
//! (group commit), on the WAL thread. [`Wal::read`] and [`Wal::commit`] are the
//! PostgreSQL writer's: it reads records back (when they are no longer in memory),
//! and moves the cursor only after they are committed; a crash between the two
//! replays them, which the store's idempotent writes absorb. Segments wholly behind
//! the cursor are deleted.
//!
//! On open every segment is checked from the cursor on. A record cut short (the
//! process died in the middle of an append) or failing its CRC is reported (log and
//! `varta_spool_corrupt_records_total`); the bytes from there on are moved to a
//! `.corrupt` file next to the segment for inspection and the segment is cut back
//! to its last good record. Records before it are kept and replayed.
//!
//! The appender and the reader share the segment list under one lock; the sync runs
//! outside it, and a reader only reads up to positions the WAL thread has reported
//! synced, so it never sees a half-written record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use varta_core::event::StoreMsg;
use varta_core::{Error, ErrorKind};

/// A new segment is started once the current one is this large.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Largest payload accepted back from disk; anything larger is corruption.
const MAX_RECORD: u32 = 256 << 20;
const HEADER: usize = 8;

/// A place in the log: segment number and byte offset in it. Ordered as the log is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// What opening a log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Good records waiting for PostgreSQL (from before this start).
    pub records: u64,
    /// Torn or corrupt records found (each cut off with what followed it).
    pub corrupt: u64,
    /// Bytes moved aside to `.corrupt` files.
    pub corrupt_bytes: u64,
}

/// Where a record of one [`Wal::append`] ends, and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Position just after the record.
    pub end: Pos,
    /// Bytes it takes, header included.
    pub bytes: u64,
}

/// What one [`Wal::read`] returned.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// The messages of the records read, in order.
    pub msgs: Vec<StoreMsg>,
    /// Position after the last record read.
    pub end: Pos,
    /// Bytes of the records read.
    pub bytes: u64,
    /// Records read.
    pub records: u64,
}

struct Tail {
    segment: u64,
    file: File,
    len: u64,
}

struct Inner {
    /// Segment numbers present, oldest first.
    segments: Vec<u64>,
    tail: Option<Tail>,
    /// Everything before this is in PostgreSQL.
    cursor: Pos,
    /// Just after the last record written.
    end: Pos,
    /// Bytes and records between the cursor and the end.
    pending_bytes: u64,
    pending_records: u64,
}

/// One write-ahead log folder, shared by the WAL thread (appends) and the
/// PostgreSQL writer (reads, commits).
pub struct Wal {
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
    /// Held for the log's life: two processes appending to one folder would
    /// interleave records.
    _lock: File,
}

fn io_err(what: String, e: io::Error) -> Error {
    Error::wrap(ErrorKind::Internal, what, e)
}

fn segment_name(n: u64) -> String {
    format!("spool-{n:010}.log")
}

/// Appends one record (header and payload) to `buf`; returns its size.
fn encode_into(msgs: &[StoreMsg], buf: &mut Vec<u8>) -> u64 {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    crate::record::encode(msgs, buf);
    let len = (buf.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    (buf.len() - start) as u64
}

impl Wal {
    /// Opens (creating) the log in `dir`, checking what is there. `max_bytes` caps
    /// what may wait for PostgreSQL ([`Wal::is_full`]). Fails when another process
    /// holds the folder.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Wal, OpenReport), Error> {
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
        let mut cursor = read_cursor(dir).unwrap_or_default();
        // Segments wholly before the cursor were taken; a crash left them behind.
        segments.retain(|&n| {
            if n < cursor.segment {
                let _ = fs::remove_file(dir.join(segment_name(n)));
                false
            } else {
                true
            }
        });
        if segments.first().is_some_and(|&n| n != cursor.segment) {
            cursor = Pos { segment: segments[0], offset: 0 };
        }
        let mut report = OpenReport::default();
        let mut pending_bytes = 0;
        let mut end = cursor;
        for &n in &segments {
            let path = dir.join(segment_name(n));
            let start = if n == cursor.segment { cursor.offset } else { 0 };
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
            if n == cursor.segment && check.good_end < cursor.offset {
                // The cursor points past what survived (a torn segment): nothing
                // before it is pending.
                cursor.offset = check.good_end;
            }
            report.records += check.records;
            pending_bytes += check.good_end - start.min(check.good_end);
            end = Pos { segment: n, offset: check.good_end };
        }
        if segments.is_empty() {
            // Nothing on disk: the next segment starts a fresh number at offset 0.
            cursor = Pos { segment: cursor.segment + 1, offset: 0 };
            end = cursor;
        }
        let inner = Inner { segments, tail: None, cursor, end, pending_bytes, pending_records: report.records };
        Ok((Wal { dir: dir.to_owned(), max_bytes, inner: Mutex::new(inner), _lock: lock }, report))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything before this is in PostgreSQL.
    pub fn cursor(&self) -> Pos {
        self.inner.lock().unwrap().cursor
    }

    /// Just after the last record written.
    pub fn end(&self) -> Pos {
        self.inner.lock().unwrap().end
    }

    /// Bytes waiting for PostgreSQL.
    pub fn pending_bytes(&self) -> u64 {
        self.inner.lock().unwrap().pending_bytes
    }

    /// Records waiting for PostgreSQL.
    pub fn pending_records(&self) -> u64 {
        self.inner.lock().unwrap().pending_records
    }

    /// True when what waits for PostgreSQL has reached the cap.
    pub fn is_full(&self) -> bool {
        self.inner.lock().unwrap().pending_bytes >= self.max_bytes
    }

    /// Appends one record per element of `groups` and syncs them to disk (one
    /// `write`, one `fdatasync`). On failure nothing is counted as written and the
    /// segment is cut back, so the caller can try the same records again.
    pub fn append(&self, groups: &[&[StoreMsg]]) -> Result<Vec<Appended>, Error> {
        let mut buf = Vec::new();
        let sizes: Vec<u64> = groups.iter().map(|g| encode_into(g, &mut buf)).collect();
        let (sync, before, segment) = {
            let mut inner = self.inner.lock().unwrap();
            self.ensure_tail(&mut inner)?;
            let tail = inner.tail.as_mut().expect("tail open");
            let (segment, before) = (tail.segment, tail.len);
            let what = || format!("appending to spool segment {}", segment_name(segment));
            if let Err(e) = tail.file.write_all(&buf) {
                let _ = tail.file.set_len(before);
                return Err(io_err(what(), e));
            }
            tail.len += buf.len() as u64;
            let sync = tail.file.try_clone().map_err(|e| io_err(what(), e))?;
            (sync, before, segment)
        };
        // The sync outside the lock: the PostgreSQL writer may commit meanwhile.
        if let Err(e) = sync.sync_data() {
            let mut inner = self.inner.lock().unwrap();
            if let Some(t) = inner.tail.as_mut().filter(|t| t.segment == segment) {
                let _ = t.file.set_len(before);
                t.len = before;
            }
            return Err(io_err(format!("syncing spool segment {}", segment_name(segment)), e));
        }
        let mut inner = self.inner.lock().unwrap();
        let mut offset = before;
        let mut out = Vec::with_capacity(sizes.len());
        for bytes in sizes {
            offset += bytes;
            out.push(Appended { end: Pos { segment, offset }, bytes });
        }
        inner.end = Pos { segment, offset };
        inner.pending_bytes += buf.len() as u64;
        inner.pending_records += out.len() as u64;
        Ok(out)
    }

    /// Opens the segment to append to: the newest, or a new one when there is none
    /// or it is full.
    fn ensure_tail(&self, inner: &mut Inner) -> Result<(), Error> {
        if inner.tail.as_ref().is_some_and(|t| t.len < SEGMENT_BYTES) {
            return Ok(());
        }
        let n = match (&inner.tail, inner.segments.last()) {
            (Some(t), _) => t.segment + 1,
            (None, Some(&n)) => {
                let len = fs::metadata(self.dir.join(segment_name(n))).map(|m| m.len()).unwrap_or(0);
                if len >= SEGMENT_BYTES {
                    n + 1
                } else {
                    n
                }
            }
            (None, None) => inner.cursor.segment.max(1),
        };
        let path = self.dir.join(segment_name(n));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(format!("opening spool segment {}", path.display()), e))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if !inner.segments.contains(&n) {
            inner.segments.push(n);
            // The new file's name must survive a crash too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            if inner.pending_records == 0 {
                inner.cursor = Pos { segment: n, offset: len };
                inner.end = inner.cursor;
            }
        }
        inner.tail = Some(Tail { segment: n, file, len });
        Ok(())
    }

    /// Reads whole records from `from` up to `to` (both record boundaries), stopping
    /// once at least `max_msgs` messages are read.
    pub fn read(&self, from: Pos, to: Pos, max_msgs: usize) -> Result<ReadBack, Error> {
        let segments: Vec<u64> = {
            let inner = self.inner.lock().unwrap();
            inner.segments.iter().copied().filter(|&n| n >= from.segment && n <= to.segment).collect()
        };
        let mut out = ReadBack { end: from, ..Default::default() };
        'segments: for n in segments {
            let start = if n == from.segment { from.offset } else { 0 };
            let path = self.dir.join(segment_name(n));
            let mut f = File::open(&path).map_err(|e| io_err(format!("opening {}", path.display()), e))?;
            let stop = if n == to.segment { to.offset } else { f.metadata().map(|m| m.len()).unwrap_or(0) };
            f.seek(SeekFrom::Start(start)).map_err(|e| io_err(format!("reading {}", path.display()), e))?;
            let mut r = io::BufReader::with_capacity(1 << 20, f);
            let mut off = start;
            out.end = Pos { segment: n, offset: off };
            while off < stop {
                let Some(payload) = read_record(&mut r, stop - off)? else {
                    return Err(varta_core::err!(
                        Internal,
                        "spool segment {} has a bad record at {off} below a synced position",
                        path.display()
                    ));
                };
                let msgs = crate::record::decode(&payload)
                    .map_err(|e| varta_core::err!(Internal, "{} at {off}: {e}", path.display()))?;
                let len = (HEADER + payload.len()) as u64;
                off += len;
                out.bytes += len;
                out.records += 1;
                out.msgs.extend(msgs);
                out.end = Pos { segment: n, offset: off };
                if out.msgs.len() >= max_msgs {
                    break 'segments;
                }
            }
        }
        Ok(out)
    }

    /// PostgreSQL has everything before `to` (`bytes` and `records` taken since the
    /// cursor): moves the cursor and deletes segments wholly behind it.
    pub fn commit(&self, to: Pos, bytes: u64, records: u64) -> Result<(), Error> {
        let mut inner = self.inner.lock().unwrap();
        inner.cursor = to;
        inner.pending_bytes = inner.pending_bytes.saturating_sub(bytes);
        inner.pending_records = inner.pending_records.saturating_sub(records);
        write_cursor(&self.dir, to)?;
        let tail = inner.tail.as_ref().map(|t| t.segment);
        while let Some(&first) = inner.segments.first() {
            if first >= to.segment || Some(first) == tail {
                break;
            }
            let _ = fs::remove_file(self.dir.join(segment_name(first)));
            inner.segments.remove(0);
        }
        Ok(())
    }
}

/// One record of a log folder, as [`dump`] reads it.
#[derive(Debug)]
pub struct Dumped {
    /// Where the record starts.
    pub at: Pos,
    /// Whether PostgreSQL has not taken it yet (at or after the cursor).
    pub pending: bool,
    /// Its messages, or why they could not be read (a torn or corrupt record ends
    /// its segment).
    pub msgs: Result<Vec<StoreMsg>, String>,
}

/// Reads every record of the log in `dir` without opening it for writing (no lock,
/// nothing moved or cut), for people: `varta spool-dump`. Segments are read in
/// order; a bad record ends its segment.
pub fn dump(dir: &Path, mut f: impl FnMut(Dumped)) -> Result<(), Error> {
    let cursor = read_cursor(dir).unwrap_or_default();
    let mut segments: Vec<u64> = fs::read_dir(dir)
        .map_err(|e| io_err(format!("reading spool folder {}", dir.display()), e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("spool-")?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    segments.sort_unstable();
    for n in segments {
        let path = dir.join(segment_name(n));
        let mut r =
            io::BufReader::new(File::open(&path).map_err(|e| io_err(format!("opening {}", path.display()), e))?);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut off = 0;
        while off < len {
            let at = Pos { segment: n, offset: off };
            match read_record(&mut r, len - off)? {
                Some(p) => {
                    off += (HEADER + p.len()) as u64;
                    f(Dumped { at, pending: at >= cursor, msgs: crate::record::decode(&p).map_err(|e| e.to_string()) });
                }
                None => {
                    f(Dumped {
                        at,
                        pending: at >= cursor,
                        msgs: Err(format!("torn or corrupt record ({} bytes)", len - off)),
                    });
                    break;
                }
            }
        }
    }
    Ok(())
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

fn read_cursor(dir: &Path) -> Option<Pos> {
    let s = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = s.split_whitespace();
    Some(Pos { segment: it.next()?.parse().ok()?, offset: it.next()?.parse().ok()? })
}

/// Written by rename so a crash leaves the old or the new cursor, never half of one.
/// Not synced: an old cursor after a power cut only means records replayed twice,
/// which the store absorbs.
fn write_cursor(dir: &Path, cursor: Pos) -> Result<(), Error> {
    let tmp = dir.join("cursor.tmp");
    fs::write(&tmp, format!("{} {}\n", cursor.segment, cursor.offset))
        .map_err(|e| io_err("writing spool cursor".into(), e))?;
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
        let d = std::env::temp_dir().join(format!("varta-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// Takes everything pending, `step` messages at a time.
    fn drain(w: &Wal, step: usize) -> Vec<StoreMsg> {
        let mut all = Vec::new();
        loop {
            let r = w.read(w.cursor(), w.end(), step).unwrap();
            if r.records == 0 {
                break;
            }
            w.commit(r.end, r.bytes, r.records).unwrap();
            all.extend(r.msgs);
        }
        all
    }

    #[test]
    fn appends_are_read_back_in_order_across_reopen() {
        let d = tmpdir("order");
        let (w, r) = Wal::open(&d, 1 << 30).unwrap();
        assert_eq!(r, OpenReport::default());
        for i in 0..5 {
            w.append(&[&[msg(i * 2), msg(i * 2 + 1)]]).unwrap();
        }
        let r = w.read(w.cursor(), w.end(), 4).unwrap();
        assert_eq!(r.msgs, vec![msg(0), msg(1), msg(2), msg(3)]);
        assert_eq!(r.records, 2);
        w.commit(r.end, r.bytes, r.records).unwrap();
        drop(w);
        let (w, r) = Wal::open(&d, 1 << 30).unwrap();
        assert_eq!(r.records, 3);
        w.append(&[&[msg(10)], &[msg(11)]]).unwrap();
        assert_eq!(w.pending_records(), 5);
        assert_eq!(drain(&w, 3), (4..12).map(msg).collect::<Vec<_>>());
        assert_eq!((w.pending_bytes(), w.pending_records()), (0, 0));
        drop(w);
        // Nothing pending after a reopen either.
        let (w, r) = Wal::open(&d, 1 << 30).unwrap();
        assert_eq!(r.records, 0);
        w.append(&[&[msg(20)]]).unwrap();
        assert_eq!(drain(&w, 10), vec![msg(20)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_reader_reads_only_up_to_the_position_it_is_given() {
        let d = tmpdir("upto");
        let (w, _) = Wal::open(&d, 1 << 30).unwrap();
        let a = w.append(&[&[msg(1)], &[msg(2)]]).unwrap();
        w.append(&[&[msg(3)]]).unwrap();
        let r = w.read(w.cursor(), a[0].end, 100).unwrap();
        assert_eq!(r.msgs, vec![msg(1)]);
        assert_eq!(r.end, a[0].end);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_tail_keeps_the_records_before_it() {
        let d = tmpdir("torn");
        let (w, _) = Wal::open(&d, 1 << 30).unwrap();
        for i in 0..3 {
            w.append(&[&[msg(i)]]).unwrap();
        }
        let seg = d.join(segment_name(w.end().segment));
        drop(w);
        let len = fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the fourth append: header and half a payload.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&200u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3, 4, b'[', b'{']).unwrap();
        drop(f);
        let (w, r) = Wal::open(&d, 1 << 30).unwrap();
        assert_eq!((r.records, r.corrupt), (3, 1));
        assert_eq!(fs::metadata(&seg).unwrap().len(), len);
        let seg_name = seg.file_name().unwrap().to_string_lossy().into_owned();
        assert!(d.join(format!("{seg_name}.corrupt-{len}")).exists());
        // New appends go after the good records.
        w.append(&[&[msg(9)]]).unwrap();
        assert_eq!(drain(&w, 100), vec![msg(0), msg(1), msg(2), msg(9)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn flipped_byte_is_caught_by_the_crc() {
        let d = tmpdir("crc");
        let (w, _) = Wal::open(&d, 1 << 30).unwrap();
        let first = w.append(&[&[msg(0)]]).unwrap()[0];
        w.append(&[&[msg(1)]]).unwrap();
        let seg = d.join(segment_name(first.end.segment));
        drop(w);
        let mut bytes = fs::read(&seg).unwrap();
        let i = first.end.offset as usize + HEADER + 5;
        bytes[i] ^= 0x20;
        fs::write(&seg, bytes).unwrap();
        let (w, r) = Wal::open(&d, 1 << 30).unwrap();
        assert_eq!((r.records, r.corrupt), (1, 1));
        assert_eq!(drain(&w, 100), vec![msg(0)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn cap_is_reported() {
        let d = tmpdir("cap");
        let (w, _) = Wal::open(&d, 200).unwrap();
        assert!(!w.is_full());
        while !w.is_full() {
            w.append(&[&[msg(0)]]).unwrap();
        }
        assert!(w.pending_bytes() >= 200);
        let r = w.read(w.cursor(), w.end(), usize::MAX).unwrap();
        w.commit(r.end, r.bytes, r.records).unwrap();
        assert!(!w.is_full());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_folder() {
        let d = tmpdir("lock");
        let (_w, _) = Wal::open(&d, 1 << 30).unwrap();
        let e = Wal::open(&d, 1 << 30).err().expect("refused");
        assert!(e.to_string().contains("in use by another process"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }
}
