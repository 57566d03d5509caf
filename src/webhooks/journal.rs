//! The webhook journal: `state.dir/webhooks.jsonl`, one JSON line per event received and per
//! delivery outcome, with an index in memory keyed by `svix-id`.
//!
//! - **Durable before the answer.** [`Journal::record`] returns once the event's line is written
//!   and fsynced; the auth layer forwards the event only then, so a 2xx the client sees always
//!   stands for a journalled event (and a crash before the fsync leaves Svix to retry).
//! - **One writer, off the runtime.** Every write goes through one thread that takes what is
//!   queued (at most [`QUEUE`] operations; a full queue is refused, never waited on), appends it
//!   and fsyncs once for the lot. Requests await only its answer.
//! - **Once per `svix-id`.** An id already delivered, or being delivered, is a duplicate; an id
//!   whose delivery failed is delivered again when Svix retries it.
//! - **Bounded by size and age.** Past [`Limits::max_bytes`], or once an event is older than
//!   [`Limits::max_age_ms`] (looked at once a minute), the file is rewritten without the oldest
//!   events, down to three quarters of the size bound; ids it drops are no longer de-duplicated.
//! - **What it knows, for triage** ([`Journal::facts`], in `/status`): the last verified
//!   delivery (read back from the file at start, so a restart does not forget it), the events
//!   delivered and those a replay would deliver; and, since start only (they are never
//!   written), the duplicates answered and the deliveries refused for their signature.
//! - **A torn line is skipped.** A line that does not read (a crash mid-write, before its event
//!   was answered) is skipped at start, counted, and gone at the next rewrite.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::event::{Envelope, Revoke};
use crate::clock::Clock;

/// The journal's file name in `state.dir`.
pub const FILE_NAME: &str = "webhooks.jsonl";

/// Operations the writer queue holds; more are refused (the caller answers 503, Svix retries).
pub const QUEUE: usize = 1024;

/// Operations the writer takes for one write and one fsync.
const BATCH: usize = 256;

/// How often the journal looks for events past their age.
const AGE_SWEEP_MS: i64 = 60_000;

/// How large and how old the journal may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The file's size bound, in bytes.
    pub max_bytes: u64,
    /// Events older than this (by arrival) are dropped.
    pub max_age_ms: i64,
}

/// How far an event's delivery to the upstream got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Being delivered now.
    InFlight,
    /// The upstream answered 2xx.
    Delivered,
    /// The upstream answered something else, or not at all.
    Failed,
    /// The gateway stopped before it knew (journalled, no outcome).
    Interrupted,
}

impl Delivery {
    /// Failed or interrupted: what `--failed` selects and a Svix retry delivers again.
    pub fn failed(self) -> bool {
        matches!(self, Delivery::Failed | Delivery::Interrupted)
    }

    /// The word the CLI shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::InFlight => "in-flight",
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
            Delivery::Interrupted => "interrupted",
        }
    }
}

/// One journalled event, without its body: what `GET /webhooks` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The Svix message id: the same for every attempt, resend and endpoint.
    pub svix_id: String,
    /// The first verified attempt's `svix-timestamp`, seconds.
    pub svix_timestamp: i64,
    /// When the gateway journalled it, ms since the epoch.
    pub received_ms: i64,
    /// The envelope's `timestamp` (when Clerk made the event), ms.
    #[serde(default)]
    pub event_ms: Option<i64>,
    /// The envelope's `type`.
    #[serde(default)]
    pub event_type: Option<String>,
    /// The envelope's `instance_id`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The path (and query) it was delivered to.
    pub path: String,
    /// How far its delivery got.
    pub delivery: Delivery,
    /// The upstream's last status (`None`: no answer, or none yet).
    #[serde(default)]
    pub last_status: Option<u16>,
    /// When the last delivery ended, ms.
    #[serde(default)]
    pub last_at_ms: Option<i64>,
    /// Deliveries tried, replays included.
    #[serde(default)]
    pub attempts: u32,
    /// Replays among them.
    #[serde(default)]
    pub replays: u32,
}

impl Summary {
    /// The order of replays: Clerk's event time, else the first attempt's.
    pub fn order_ms(&self) -> i64 {
        self.event_ms.unwrap_or(self.svix_timestamp.saturating_mul(1000))
    }
}

/// A journalled event with its body, for a replay.
#[derive(Debug, Clone)]
pub struct Stored {
    /// What the list shows.
    pub summary: Summary,
    /// The original `Content-Type`.
    pub content_type: Option<String>,
    /// The raw body, byte for byte.
    pub body: Vec<u8>,
}

/// What a request tells the journal about a verified delivery.
#[derive(Debug, Clone)]
pub struct Head {
    /// `svix-id`.
    pub svix_id: String,
    /// `svix-timestamp`, seconds.
    pub svix_timestamp: i64,
    /// The path and query the upstream receives.
    pub path: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
}

/// What became of a recorded delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First seen: journalled; deliver it.
    New,
    /// Seen, and its delivery failed: deliver it again.
    Retry,
    /// Delivered, or being delivered: answer 2xx, deliver nothing.
    Duplicate(Delivery),
}

/// The end of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The upstream's status, `None` when it gave none.
    pub status: Option<u16>,
    /// A replay (`clerkgate webhooks replay`), not Svix's own delivery.
    pub replay: bool,
}

impl Outcome {
    /// A 2xx.
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A revocation an event asks for, to the gateway's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fed {
    /// Whom.
    pub revoke: Revoke,
    /// The event's `svix-id`.
    pub svix_id: String,
    /// The event's type.
    pub event_type: String,
}

/// Why an event could not be journalled (it is then not forwarded: the client gets 503 and
/// Svix retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The writer's queue is full.
    #[error("the webhook journal has {QUEUE} writes queued; try again shortly")]
    Busy,
    /// The write or the fsync failed.
    #[error("cannot write the webhook journal {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The writer stopped.
    #[error("the webhook journal's writer has stopped")]
    Closed,
}

/// A line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Line {
    Received {
        svix_id: String,
        svix_timestamp: i64,
        received_ms: i64,
        #[serde(default)]
        event_ms: Option<i64>,
        #[serde(default)]
        event_type: Option<String>,
        #[serde(default)]
        instance_id: Option<String>,
        path: String,
        #[serde(default)]
        content_type: Option<String>,
        /// The body as text, or base64 when `body_base64` (a body that is not UTF-8).
        body: String,
        #[serde(default)]
        body_base64: bool,
    },
    /// A delivery ended; counts are totals after it, so the last line of an id is its state.
    Outcome {
        svix_id: String,
        at_ms: i64,
        #[serde(default)]
        status: Option<u16>,
        delivered: bool,
        #[serde(default)]
        attempts: u32,
        #[serde(default)]
        replays: u32,
    },
}

/// An event in the index: its summary, and where its `received` line is.
#[derive(Debug, Clone)]
struct Slot {
    summary: Summary,
    content_type: Option<String>,
    offset: u64,
    len: u64,
}

#[derive(Debug, Default)]
struct Index {
    slots: HashMap<String, Slot>,
    file_len: u64,
    last_sweep_ms: i64,
    /// The last verified delivery: the newest event's arrival at start, then every record.
    last_verified_ms: Option<i64>,
    /// Duplicates answered since start.
    duplicates: u64,
}

/// What the journal knows about Clerk's deliveries (clerk-ops §8.4 P6): `/status` shows it and
/// triage reads it for `webhook-gap`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Events in the journal.
    pub events: usize,
    /// Of them, delivered to the upstream.
    pub delivered: usize,
    /// Of them, failed or interrupted: what `clerkgate webhooks replay --failed` would deliver.
    pub pending_replay: usize,
    /// The last verified delivery (a new event, a retry or a duplicate), ms; at start, the
    /// newest event's arrival in the file.
    pub last_verified_ms: Option<i64>,
    /// Duplicates answered without a delivery, since start.
    pub duplicates: u64,
    /// Deliveries refused for their signature or timestamp, since start.
    pub refused: u64,
    /// The first of them since start, ms.
    pub first_refused_ms: Option<i64>,
    /// The last of them, ms.
    pub last_refused_ms: Option<i64>,
}

/// Deliveries refused before they reach the journal (counted on the request path, so atomics:
/// the index is held while the writer fsyncs).
#[derive(Debug)]
struct Refusals {
    count: AtomicU64,
    first_ms: AtomicI64,
    last_ms: AtomicI64,
}

/// "None" in [`Refusals`]' times.
const NEVER: i64 = i64::MIN;

impl Default for Refusals {
    fn default() -> Self {
        Refusals { count: AtomicU64::new(0), first_ms: AtomicI64::new(NEVER), last_ms: AtomicI64::new(NEVER) }
    }
}

/// What [`Journal::open`] found in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Events read.
    pub events: usize,
    /// Lines that did not read and were skipped.
    pub skipped: usize,
}

enum Op {
    Record {
        head: Head,
        body: Bytes,
        reply: oneshot::Sender<Result<Recorded, JournalError>>,
    },
    Mark {
        svix_id: String,
        outcome: Outcome,
    },
    /// Answered once every operation queued before it is applied.
    Settle {
        reply: oneshot::Sender<()>,
    },
}

/// The journal: shared by the auth layer (record, mark) and the admin API (list, read).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    index: Arc<Mutex<Index>>,
    tx: mpsc::Sender<Op>,
    feed: Mutex<Option<mpsc::Receiver<Fed>>>,
    refusals: Refusals,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Record { head, .. } => write!(f, "Record({})", head.svix_id),
            Op::Mark { svix_id, .. } => write!(f, "Mark({svix_id})"),
            Op::Settle { .. } => write!(f, "Settle"),
        }
    }
}

fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and starts its writer thread (blocking: reads
    /// the file).
    pub fn open(dir: &Path, limits: Limits, clock: Clock) -> std::io::Result<(Journal, Loaded)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let (mut index, loaded) = load(&mut file)?;
        // A torn last line is cut, so the next line starts on a line of its own.
        if index.file_len < file.metadata()?.len() {
            file.set_len(index.file_len)?;
            file.sync_all()?;
        }
        index.last_sweep_ms = i64::MIN;
        index.last_verified_ms = index.slots.values().map(|s| s.summary.received_ms).max();
        let index = Arc::new(Mutex::new(index));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (feed_tx, feed) = mpsc::channel(QUEUE);
        drop(file);
        let writer = Writer { path: path.clone(), index: index.clone(), limits, clock, feed: feed_tx };
        std::thread::Builder::new().name("webhook-journal".into()).spawn(move || writer.run(rx))?;
        Ok((Journal { path, index, tx, feed: Mutex::new(Some(feed)), refusals: Refusals::default() }, loaded))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The revocations events ask for, in order; the first caller takes them.
    pub fn take_feed(&self) -> Option<mpsc::Receiver<Fed>> {
        self.feed.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Journals a verified delivery (durably, when new) and says whether to forward it.
    pub async fn record(&self, head: Head, body: Bytes) -> Result<Recorded, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Op::Record { head, body, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => JournalError::Busy,
            mpsc::error::TrySendError::Closed(_) => JournalError::Closed,
        })?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Notes how a delivery ended (written with the next batch, not waited for).
    pub fn mark(&self, svix_id: String, outcome: Outcome) {
        if let Err(e) = self.tx.try_send(Op::Mark { svix_id, outcome }) {
            tracing::warn!(error = %e, "could not note a webhook delivery's outcome in the journal");
        }
    }

    /// Waits until every outcome noted before this call is in the index, so that a listing
    /// taken after a delivery's answer shows how it ended ([`Journal::mark`] does not wait).
    pub async fn settled(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Op::Settle { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Notes a delivery refused for its signature or timestamp, at `at_ms` (not written: a
    /// refused delivery is Svix's to retry, and the count is the gateway's since start).
    pub fn refused(&self, at_ms: i64) {
        let r = &self.refusals;
        r.count.fetch_add(1, Ordering::Relaxed);
        let _ = r.first_ms.compare_exchange(NEVER, at_ms, Ordering::Relaxed, Ordering::Relaxed);
        r.last_ms.fetch_max(at_ms, Ordering::Relaxed);
    }

    /// What the journal knows about deliveries ([`Facts`]).
    pub fn facts(&self) -> Facts {
        let index = lock(&self.index);
        let r = &self.refusals;
        let time = |t: &AtomicI64| Some(t.load(Ordering::Relaxed)).filter(|t| *t != NEVER);
        Facts {
            events: index.slots.len(),
            delivered: index.slots.values().filter(|s| s.summary.delivery == Delivery::Delivered).count(),
            pending_replay: index.slots.values().filter(|s| s.summary.delivery.failed()).count(),
            last_verified_ms: index.last_verified_ms,
            duplicates: index.duplicates,
            refused: r.count.load(Ordering::Relaxed),
            first_refused_ms: time(&r.first_ms),
            last_refused_ms: time(&r.last_ms),
        }
    }

    /// The events received at or after `since_ms`, only failed ones with `failed_only`, only
    /// those named in `ids` when it is not empty; in replay order (Clerk's event time).
    pub fn list(&self, since_ms: Option<i64>, failed_only: bool, ids: &[String]) -> Vec<Summary> {
        let index = lock(&self.index);
        let mut out: Vec<Summary> = index
            .slots
            .values()
            .map(|s| &s.summary)
            .filter(|s| since_ms.is_none_or(|t| s.received_ms >= t))
            .filter(|s| !failed_only || s.delivery.failed())
            .filter(|s| ids.is_empty() || ids.contains(&s.svix_id))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.order_ms(), a.received_ms, &a.svix_id).cmp(&(b.order_ms(), b.received_ms, &b.svix_id)));
        out
    }

    /// One event with its body (blocking: reads the file), `Ok(None)` when it is not journalled.
    pub fn read(&self, svix_id: &str) -> std::io::Result<Option<Stored>> {
        let index = lock(&self.index);
        let Some(slot) = index.slots.get(svix_id) else { return Ok(None) };
        let mut file = File::open(&self.path)?;
        let line = read_at(&mut file, slot.offset, slot.len)?;
        match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Received { body, body_base64, .. }) => {
                let body = if body_base64 {
                    base64::engine::general_purpose::STANDARD.decode(body).map_err(std::io::Error::other)?
                } else {
                    body.into_bytes()
                };
                Ok(Some(Stored { summary: slot.summary.clone(), content_type: slot.content_type.clone(), body }))
            }
            _ => Err(std::io::Error::other(format!("{}: the line of {svix_id} does not read", self.path.display()))),
        }
    }
}

fn read_at(file: &mut File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut line = Vec::new();
    file.take(len).read_to_end(&mut line)?;
    Ok(line)
}

/// Reads the file from the start into an index; `file_len` ends after the last whole line.
fn load(file: &mut File) -> std::io::Result<(Index, Loaded)> {
    file.seek(SeekFrom::Start(0))?;
    index_lines(BufReader::new(&*file))
}

/// Reads journal lines into an index: the start's reader, and the fuzz target's.
fn index_lines(mut reader: impl BufRead) -> std::io::Result<(Index, Loaded)> {
    let mut index = Index::default();
    let mut loaded = Loaded::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)? as u64;
        if n == 0 || line.last() != Some(&b'\n') {
            loaded.skipped += usize::from(n > 0);
            break;
        }
        let at = index.file_len;
        index.file_len += n;
        match apply_line(&mut index, &line, at, n) {
            Some(true) => loaded.events += 1,
            Some(false) => {}
            None => loaded.skipped += 1,
        }
    }
    Ok((index, loaded))
}

/// Applies one line read from the file: `Some(true)` for a new event, `Some(false)` for an
/// outcome (or an event already read), `None` for a line that does not read.
fn apply_line(index: &mut Index, line: &[u8], offset: u64, len: u64) -> Option<bool> {
    let line = serde_json::from_slice::<Line>(line).ok()?;
    if let Some((summary, content_type)) = summary_of(&line, Delivery::Interrupted) {
        if index.slots.contains_key(&summary.svix_id) {
            return Some(false);
        }
        index.slots.insert(summary.svix_id.clone(), Slot { summary, content_type, offset, len });
        return Some(true);
    }
    if let Line::Outcome { svix_id, at_ms, status, delivered, attempts, replays } = line {
        if let Some(slot) = index.slots.get_mut(&svix_id) {
            let s = &mut slot.summary;
            s.delivery = if delivered { Delivery::Delivered } else { Delivery::Failed };
            (s.last_status, s.last_at_ms, s.attempts, s.replays) = (status, Some(at_ms), attempts, replays);
        }
    }
    Some(false)
}

/// The summary (and content type) of a `received` line, in `delivery`.
fn summary_of(line: &Line, delivery: Delivery) -> Option<(Summary, Option<String>)> {
    let Line::Received {
        svix_id,
        svix_timestamp,
        received_ms,
        event_ms,
        event_type,
        instance_id,
        path,
        content_type,
        ..
    } = line
    else {
        return None;
    };
    let summary = Summary {
        svix_id: svix_id.clone(),
        svix_timestamp: *svix_timestamp,
        received_ms: *received_ms,
        event_ms: *event_ms,
        event_type: event_type.clone(),
        instance_id: instance_id.clone(),
        path: path.clone(),
        delivery,
        last_status: None,
        last_at_ms: None,
        attempts: 0,
        replays: 0,
    };
    Some((summary, content_type.clone()))
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    index: Arc<Mutex<Index>>,
    limits: Limits,
    clock: Clock,
    feed: mpsc::Sender<Fed>,
}

/// What one batch owes: its replies, and the revocations to feed once it is written.
struct Answers {
    owed: Vec<Owed>,
    error: Option<JournalError>,
    fed: Vec<Fed>,
}

impl Answers {
    fn send(self, feed: &mpsc::Sender<Fed>) {
        let Answers { owed, error, fed } = self;
        for o in owed {
            match (o, &error) {
                (Owed::Now(reply, recorded), _) => drop(reply.send(Ok(recorded))),
                (Owed::IfWritten(reply), None) => drop(reply.send(Ok(Recorded::New))),
                (Owed::IfWritten(reply), Some(e)) => drop(reply.send(Err(e.clone()))),
                (Owed::Settled(reply), _) => drop(reply.send(())),
            }
        }
        if error.is_none() {
            for f in fed {
                if feed.try_send(f).is_err() {
                    tracing::warn!("the webhook revocation feed is full; an event's revocation was not applied");
                }
            }
        }
    }
}

/// A reply held until the batch is written: known already, or owed once the write succeeds.
enum Owed {
    Now(oneshot::Sender<Result<Recorded, JournalError>>, Recorded),
    IfWritten(oneshot::Sender<Result<Recorded, JournalError>>),
    Settled(oneshot::Sender<()>),
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.blocking_recv() {
            let mut ops = vec![first];
            while ops.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let answers = self.batch(ops);
            // Any rewrite happens before the answers go out, so that once the last caller has
            // its answer the writer touches the file no more (a restart may open it at once).
            if let Err(e) = self.maybe_compact() {
                tracing::error!(error = %e, path = %self.path.display(), "could not rewrite the webhook journal");
            }
            answers.send(&self.feed);
        }
    }

    /// Appends what the operations need in one write and one fsync; the answers, to send.
    fn batch(&mut self, ops: Vec<Op>) -> Answers {
        let now_ms = self.clock.now_ms();
        let mut buf = Vec::new();
        let mut owed = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        let mut fed = Vec::new();
        let mut index = lock(&self.index);
        let start = index.file_len;
        let mut ids_new: HashSet<String> = HashSet::new();
        for op in ops {
            match op {
                Op::Record { head, body, reply } => {
                    index.last_verified_ms = index.last_verified_ms.max(Some(now_ms));
                    if ids_new.contains(&head.svix_id) {
                        index.duplicates += 1;
                        owed.push(Owed::Now(reply, Recorded::Duplicate(Delivery::InFlight)));
                        continue;
                    }
                    if let Some(slot) = index.slots.get_mut(&head.svix_id) {
                        let s = &mut slot.summary;
                        let recorded = if s.delivery.failed() {
                            s.delivery = Delivery::InFlight;
                            Recorded::Retry
                        } else {
                            Recorded::Duplicate(s.delivery)
                        };
                        index.duplicates += u64::from(matches!(recorded, Recorded::Duplicate(_)));
                        owed.push(Owed::Now(reply, recorded));
                        continue;
                    }
                    let envelope = Envelope::read(&body);
                    let offset = start + buf.len() as u64;
                    let (text, body_base64) = match std::str::from_utf8(&body) {
                        Ok(t) => (t.to_string(), false),
                        Err(_) => (base64::engine::general_purpose::STANDARD.encode(&body), true),
                    };
                    let line = Line::Received {
                        svix_id: head.svix_id.clone(),
                        svix_timestamp: head.svix_timestamp,
                        received_ms: now_ms,
                        event_ms: envelope.timestamp_ms,
                        event_type: envelope.event_type.clone(),
                        instance_id: envelope.instance_id,
                        path: head.path,
                        content_type: head.content_type,
                        body: text,
                        body_base64,
                    };
                    push_line(&mut buf, &line);
                    let len = start + buf.len() as u64 - offset;
                    if let Some((summary, content_type)) = summary_of(&line, Delivery::InFlight) {
                        slots.push(Slot { summary, content_type, offset, len });
                    }
                    if let Some(revoke) = envelope.revokes {
                        let event_type = envelope.event_type.unwrap_or_default();
                        fed.push(Fed { revoke, svix_id: head.svix_id.clone(), event_type });
                    }
                    ids_new.insert(head.svix_id);
                    owed.push(Owed::IfWritten(reply));
                }
                Op::Settle { reply } => owed.push(Owed::Settled(reply)),
                Op::Mark { svix_id, outcome } => {
                    let in_batch = slots.iter_mut().find(|s| s.summary.svix_id == svix_id);
                    let Some(slot) = in_batch.or_else(|| index.slots.get_mut(&svix_id)) else { continue };
                    let s = &mut slot.summary;
                    s.attempts += 1;
                    s.replays += u32::from(outcome.replay);
                    s.delivery = if outcome.delivered() { Delivery::Delivered } else { Delivery::Failed };
                    (s.last_status, s.last_at_ms) = (outcome.status, Some(now_ms));
                    push_line(&mut buf, &outcome_line(s));
                }
            }
        }
        // Opened for each batch, not held: an open file would keep the volume from being
        // remounted read-only, and a journal that can no longer be written should say so.
        let written = if buf.is_empty() {
            Ok(())
        } else {
            OpenOptions::new().append(true).open(&self.path).and_then(|mut file| {
                let written = file.write_all(&buf).and_then(|()| file.sync_data());
                if written.is_err() {
                    // Cut what may have been written in part, so the file stays whole lines.
                    let _ = file.set_len(start);
                }
                written
            })
        };
        let error = match written {
            Ok(()) => {
                index.file_len = start + buf.len() as u64;
                for slot in slots {
                    index.slots.insert(slot.summary.svix_id.clone(), slot);
                }
                None
            }
            Err(e) => {
                tracing::error!(error = %e, path = %self.path.display(), "could not write the webhook journal");
                Some(JournalError::Io { path: self.path.display().to_string(), message: e.to_string() })
            }
        };
        Answers { owed, error, fed }
    }

    /// Rewrites the file without the events past the limits, when it is over its size or an
    /// event is past its age (looked at once every [`AGE_SWEEP_MS`]).
    fn maybe_compact(&mut self) -> std::io::Result<()> {
        let now_ms = self.clock.now_ms();
        let mut index = lock(&self.index);
        let too_big = index.file_len > self.limits.max_bytes;
        let sweep = now_ms.saturating_sub(index.last_sweep_ms) >= AGE_SWEEP_MS;
        if sweep {
            index.last_sweep_ms = now_ms;
        }
        let oldest = |s: &Slot| now_ms.saturating_sub(s.summary.received_ms) > self.limits.max_age_ms;
        let too_old = sweep && index.slots.values().any(oldest);
        if !too_big && !too_old {
            return Ok(());
        }
        let mut keep: Vec<&Slot> = index.slots.values().filter(|s| !oldest(s)).collect();
        keep.sort_by_key(|s| std::cmp::Reverse((s.summary.received_ms, s.offset)));
        let budget = self.limits.max_bytes / 4 * 3;
        let mut size = 0u64;
        let mut kept = 0usize;
        for s in &keep {
            size += s.len + 200;
            if size > budget {
                break;
            }
            kept += 1;
        }
        keep.truncate(kept);
        keep.reverse();

        let tmp = self.path.with_file_name(format!(".{FILE_NAME}.compact-{}", std::process::id()));
        let mut source = File::open(&self.path)?;
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut placed = Vec::with_capacity(keep.len());
        let mut at = 0u64;
        let written = (|| -> std::io::Result<()> {
            for s in &keep {
                let line = read_at(&mut source, s.offset, s.len)?;
                out.write_all(&line)?;
                placed.push((s.summary.svix_id.clone(), at));
                at += s.len;
                if s.summary.last_at_ms.is_some() {
                    let mut tail = Vec::new();
                    push_line(&mut tail, &outcome_line(&s.summary));
                    out.write_all(&tail)?;
                    at += tail.len() as u64;
                }
            }
            out.flush()?;
            out.get_ref().sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Ok(d) = File::open(crate::fsutil::parent(&self.path)) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let dropped = index.slots.len() - placed.len();
        let mut slots = HashMap::with_capacity(placed.len());
        for (id, offset) in placed {
            if let Some(mut slot) = index.slots.remove(&id) {
                slot.offset = offset;
                slots.insert(id, slot);
            }
        }
        index.slots = slots;
        index.file_len = at;
        tracing::info!(dropped, kept = index.slots.len(), bytes = at, "webhook journal rewritten within its limits");
        Ok(())
    }
}

fn outcome_line(s: &Summary) -> Line {
    Line::Outcome {
        svix_id: s.svix_id.clone(),
        at_ms: s.last_at_ms.unwrap_or_default(),
        status: s.last_status,
        delivered: s.delivery == Delivery::Delivered,
        attempts: s.attempts,
        replays: s.replays,
    }
}

fn push_line(buf: &mut Vec<u8>, line: &Line) {
    // A line of strings and integers always serialises.
    if serde_json::to_writer(&mut *buf, line).is_ok() {
        buf.push(b'\n');
    }
}

/// Reads a journal file's bytes as the start does, for the fuzz target: the ids of the events
/// found, in order, and what was read and skipped.
pub fn read_lines(bytes: &[u8]) -> (Vec<String>, Loaded) {
    let Ok((index, loaded)) = index_lines(bytes) else { return (Vec::new(), Loaded::default()) };
    let mut ids: Vec<String> = index.slots.into_keys().collect();
    ids.sort();
    (ids, loaded)
}

#[cfg(test)]
mod tests;
