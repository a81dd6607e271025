//! The node's journal: where the ingest and detection hand every record they make
//! (events, camera status transitions), in order, to be made durable.
//!
//! The store's WAL thread takes the queued records, writes them to the
//! write-ahead log on local disk and syncs it (group commit: one `fdatasync` for
//! everything queued meanwhile), then marks them durable here; only then does the
//! store write them to PostgreSQL. So a record handed to [`Journal::append`] is on
//! disk within one flush interval (plus one sync), whatever happens to the process
//! after that.
//!
//! Sequence numbers: every append gets the next number (from 1). A record is
//! *durable* once the WAL thread has synced it ([`Journal::durable`]). A *hold*
//! ([`Journal::append_held`]) keeps records from going further than the disk until
//! its owner releases it: detection holds an event until its snapshot JPEG exists,
//! so a row that names a snapshot never reaches PostgreSQL before its file, and the
//! JPEG is written only once its record is durable (no JPEG without its row after
//! a crash). [`Journal::released_through`] is the highest number below which
//! nothing is held or waiting for the disk: the store writes to PostgreSQL up to it.
//!
//! Back-pressure, never loss: when `capacity` messages wait for the disk (the disk
//! is slow, full or failing), [`Journal::append`] blocks, so detection backs up
//! instead of dropping. It blocks too while the store reports a *downstream*
//! backlog at its limit ([`Journal::set_downstream`]): PostgreSQL answers but takes
//! records slower than they come, so they would pile up in memory (and then be read
//! back from disk at a cost). The WAL thread itself never waits for PostgreSQL, so
//! whatever was appended is on disk within the flush interval either way.

use crate::event::StoreMsg;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The journal was closed (the node is stopping); the record was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the event journal is closed")]
pub struct Closed;

/// Whether records are on disk yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Synced to the write-ahead log.
    Durable,
    /// Not yet (the wait timed out).
    NotYet,
    /// Never: the WAL thread has exited without writing them.
    Never,
}

/// Records waiting for the disk, as the WAL thread takes them.
#[derive(Debug, Default)]
pub struct Pending {
    /// The messages, in append order.
    pub msgs: Vec<StoreMsg>,
    /// Sequence number of each append in `msgs`, with the index of its first message.
    pub seqs: Vec<(u64, usize)>,
}

impl Pending {
    /// The highest sequence number taken (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.seqs.last().map_or(0, |s| s.0)
    }
}

#[derive(Debug)]
struct State {
    queue: VecDeque<(u64, Vec<StoreMsg>)>,
    /// Messages in `queue`.
    queued: usize,
    /// Number the next append gets.
    next_seq: u64,
    /// Highest number synced to disk.
    durable: u64,
    /// Unreleased holds.
    holds: BTreeSet<u64>,
    closed: bool,
    /// The WAL thread has exited: what is not durable now never will be.
    wal_gone: bool,
    /// Messages synced but not yet in PostgreSQL while it answers (see
    /// [`Journal::set_downstream`]).
    downstream: usize,
}

/// The hand-off between the record makers and the store's WAL thread. Shared as
/// `Arc<Journal>`.
#[derive(Debug)]
pub struct Journal {
    state: Mutex<State>,
    /// Producers wait for room, the WAL thread for records, holders for durability.
    changed: Condvar,
    /// Wakes the asynchronous PostgreSQL writer when [`Journal::released_through`] moves.
    released: tokio::sync::Notify,
    capacity: usize,
    downstream_limit: usize,
}

/// Records kept from PostgreSQL until released (or dropped).
#[must_use = "a hold keeps every later record from PostgreSQL until it is released"]
#[derive(Debug)]
pub struct Hold {
    journal: Arc<Journal>,
    seq: u64,
    done: bool,
}

impl Hold {
    /// The sequence number of the held records.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits up to `timeout` until the held records are on disk.
    pub fn wait_durable(&self, timeout: Duration) -> Durability {
        self.journal.wait_durable(self.seq, timeout)
    }

    /// Lets the held records (and everything after them) go to PostgreSQL.
    pub fn release(mut self) {
        self.done = true;
        self.journal.release(self.seq);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.done {
            self.journal.release(self.seq);
        }
    }
}

impl Journal {
    /// A journal that blocks producers once `capacity` messages wait for the disk, or
    /// while the store's downstream backlog is at `capacity` × 2.
    pub fn new(capacity: usize) -> Arc<Journal> {
        Arc::new(Journal {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: 0,
                next_seq: 1,
                durable: 0,
                holds: BTreeSet::new(),
                closed: false,
                wal_gone: false,
                downstream: 0,
            }),
            changed: Condvar::new(),
            released: tokio::sync::Notify::new(),
            capacity: capacity.max(1),
            downstream_limit: capacity.max(1) * 2,
        })
    }

    fn push(&self, msgs: Vec<StoreMsg>, hold: bool) -> Result<u64, Closed> {
        let mut st = self.state.lock().unwrap();
        // A single append larger than the capacity still goes in once the queue is empty.
        while !st.closed
            && ((st.queued > 0 && st.queued + msgs.len() > self.capacity) || st.downstream >= self.downstream_limit)
        {
            st = self.changed.wait(st).unwrap();
        }
        if st.closed {
            return Err(Closed);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queued += msgs.len();
        st.queue.push_back((seq, msgs));
        if hold {
            st.holds.insert(seq);
        }
        drop(st);
        self.changed.notify_all();
        Ok(seq)
    }

    /// Appends records; blocks while the journal is full. Returns the sequence number.
    pub fn append(&self, msgs: Vec<StoreMsg>) -> Result<u64, Closed> {
        self.push(msgs, false)
    }

    /// Appends records that must not reach PostgreSQL before the returned [`Hold`] is
    /// released (or dropped). Blocks while the journal is full.
    pub fn append_held(self: &Arc<Self>, msgs: Vec<StoreMsg>) -> Result<Hold, Closed> {
        let seq = self.push(msgs, true)?;
        Ok(Hold { journal: self.clone(), seq, done: false })
    }

    /// Waits up to `timeout` until record `seq` is on disk.
    pub fn wait_durable(&self, seq: u64, timeout: Duration) -> Durability {
        let end = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            if st.durable >= seq {
                return Durability::Durable;
            }
            if st.wal_gone {
                return Durability::Never;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Durability::NotYet;
            }
            st = self.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    fn release(&self, seq: u64) {
        self.state.lock().unwrap().holds.remove(&seq);
        self.released.notify_one();
    }

    /// The sequence number of the last append (0 before the first).
    pub fn appended(&self) -> u64 {
        self.state.lock().unwrap().next_seq - 1
    }

    /// The highest sequence number durable so far.
    pub fn durable(&self) -> u64 {
        self.state.lock().unwrap().durable
    }

    /// Every record numbered up to this is durable and not held.
    pub fn released_through(&self) -> u64 {
        let st = self.state.lock().unwrap();
        match st.holds.first() {
            Some(&h) => st.durable.min(h - 1),
            None => st.durable,
        }
    }

    /// Resolves when [`Journal::released_through`] may have moved (or the journal
    /// closed). Create the future before checking, as with [`tokio::sync::Notify`].
    pub fn released_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }

    /// Messages that may wait for the disk before producers block.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The store's backlog: messages on disk that PostgreSQL, answering, has not
    /// taken yet (0 while PostgreSQL is away: then the log grows instead). Producers
    /// wait while it is at twice the capacity.
    pub fn set_downstream(&self, msgs: usize) {
        let mut st = self.state.lock().unwrap();
        let was = st.downstream;
        st.downstream = msgs;
        drop(st);
        if msgs < was {
            self.changed.notify_all();
        }
    }

    /// Messages waiting for the disk.
    pub fn queued(&self) -> usize {
        self.state.lock().unwrap().queued
    }

    /// Stops taking records: later appends fail with [`Closed`]; what is queued is
    /// still written.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.changed.notify_all();
        self.released.notify_one();
    }

    /// True once [`Journal::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().unwrap().closed
    }

    // --- The WAL thread's side ---

    /// Waits up to `timeout` for records; true if some are queued.
    pub fn wait_pending(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        while st.queue.is_empty() && !st.closed {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.changed.wait_timeout(st, left).unwrap().0;
        }
        !st.queue.is_empty()
    }

    /// Waits until `deadline`, or until at least `enough` messages are queued or the
    /// journal is closed (group commit: what arrives meanwhile shares one sync).
    pub fn wait_group(&self, deadline: Instant, enough: usize) {
        let mut st = self.state.lock().unwrap();
        while st.queued < enough && !st.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Takes every queued append (whole appends; at least one if any is queued).
    /// Producers blocked on a full journal may go on.
    pub fn take_pending(&self) -> Pending {
        let mut st = self.state.lock().unwrap();
        let mut out = Pending::default();
        while let Some((seq, msgs)) = st.queue.pop_front() {
            out.seqs.push((seq, out.msgs.len()));
            out.msgs.extend(msgs);
        }
        st.queued = 0;
        drop(st);
        self.changed.notify_all();
        out
    }

    /// Records up to `seq` are on disk.
    pub fn mark_durable(&self, seq: u64) {
        {
            let mut st = self.state.lock().unwrap();
            st.durable = st.durable.max(seq);
        }
        self.changed.notify_all();
        self.released.notify_one();
    }

    /// The WAL thread has exited; whoever waits for durability stops waiting.
    pub fn wal_gone(&self) {
        self.state.lock().unwrap().wal_gone = true;
        self.changed.notify_all();
        self.released.notify_one();
    }

    /// True when closed and nothing is queued: the WAL thread may exit.
    pub fn drained(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.closed && st.queue.is_empty()
    }

    /// Hands every record to `f` on a thread of its own and marks it durable without
    /// writing it anywhere: for benchmarks and tests of one stage (the ingest or the
    /// detector alone), never for the service. A record is marked durable only after
    /// `f` has returned, so [`Journal::durable`] reaching [`Journal::appended`] means
    /// `f` has seen every record. The thread ends once the journal is closed and
    /// drained.
    pub fn drain_with(
        self: &Arc<Self>,
        mut f: impl FnMut(Vec<StoreMsg>) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let j = self.clone();
        std::thread::spawn(move || {
            loop {
                if !j.wait_pending(Duration::from_millis(200)) {
                    if j.drained() {
                        break;
                    }
                    continue;
                }
                let p = j.take_pending();
                let last = p.last_seq();
                f(p.msgs);
                j.mark_durable(last);
            }
            j.wal_gone();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CameraState, StatusChange};

    fn msg(i: i64) -> StoreMsg {
        StoreMsg::Status(StatusChange {
            camera: "c".into(),
            at: chrono::DateTime::from_timestamp(1_800_000_000 + i, 0).unwrap(),
            state: CameraState::Streaming,
            reason: String::new(),
        })
    }

    #[test]
    fn holds_keep_later_records_from_release_until_dropped() {
        let j = Journal::new(100);
        let a = j.append(vec![msg(1)]).unwrap();
        let hold = j.append_held(vec![msg(2)]).unwrap();
        let c = j.append(vec![msg(3)]).unwrap();
        assert_eq!((a, hold.seq(), c), (1, 2, 3));
        assert_eq!(j.released_through(), 0, "nothing is durable yet");
        let p = j.take_pending();
        assert_eq!(p.msgs.len(), 3);
        assert_eq!(p.seqs, vec![(1, 0), (2, 1), (3, 2)]);
        j.mark_durable(p.last_seq());
        assert_eq!(hold.wait_durable(Duration::from_millis(1)), Durability::Durable);
        assert_eq!(j.released_through(), 1, "the hold keeps 2 and 3 back");
        drop(hold);
        assert_eq!(j.released_through(), 3);
    }

    #[test]
    fn a_full_journal_blocks_the_producer_until_the_wal_takes_records() {
        let j = Journal::new(2);
        j.append(vec![msg(1), msg(2)]).unwrap();
        let j2 = j.clone();
        let producer = std::thread::spawn(move || j2.append(vec![msg(3)]).unwrap());
        assert!(j.wait_pending(Duration::from_secs(1)));
        // The producer cannot go on while two messages wait.
        std::thread::yield_now();
        assert_eq!(j.queued(), 2);
        let p = j.take_pending();
        assert_eq!(p.msgs.len(), 2);
        assert_eq!(producer.join().unwrap(), 2);
        assert_eq!(j.queued(), 1);
    }

    #[test]
    fn a_downstream_backlog_at_its_limit_blocks_producers_until_it_shrinks() {
        let j = Journal::new(2);
        j.set_downstream(4);
        let j2 = j.clone();
        let producer = std::thread::spawn(move || j2.append(vec![msg(1)]).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!producer.is_finished(), "a producer must wait while PostgreSQL is behind");
        j.set_downstream(3);
        assert_eq!(producer.join().unwrap(), 1);
    }

    #[test]
    fn closing_refuses_new_records_and_wakes_waiters() {
        let j = Journal::new(10);
        let hold = j.append_held(vec![msg(1)]).unwrap();
        j.close();
        assert_eq!(j.append(vec![msg(2)]), Err(Closed));
        assert!(!j.drained(), "what was queued is still to be written");
        let _ = j.take_pending();
        assert!(j.drained());
        j.wal_gone();
        assert_eq!(hold.wait_durable(Duration::from_secs(5)), Durability::Never);
    }
}
