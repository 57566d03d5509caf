//! The follower: one task per gateway that keeps the fleet layer in step with Redis, and its
//! reporter, which copies this gateway's audit records to the fleet's audit stream and writes
//! its acknowledgement (fleet-deploy §2.7, "Gateway loop").
//!
//! Connect (two connections: one for the blocking read, one for writes) → read the state
//! whole → follow the events stream from the last id → on a quiet heartbeat, compare the
//! store's id and epoch with what was applied (any doubt: read it whole again), and read it
//! whole every `resync_interval` regardless → on any error, drop both connections, wait
//! (100 ms doubling to 5 s, with jitter) and start over. Requests never wait for any of this.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, Seek};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use serde::{Deserialize, Serialize};

use super::client::AUDIT_KEEP_MS;
use super::link::{self, COMMAND_TIMEOUT};
use super::{shape, FleetCopy, Inner, Names};
use crate::store::file::FileStore;
use crate::store::{AuditLines, AuditRecord, Change, StoreError};
use crate::telemetry::names as metric;

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Audit records copied per round trip.
const AUDIT_BATCH: usize = 256;

/// Runs the follower for as long as the gateway runs.
pub(super) async fn run(inner: Arc<Inner>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        let Err(problem) = session(&inner).await;
        {
            let mut link = inner.link();
            if link.connected || link.problem.as_deref() != Some(problem.as_str()) {
                tracing::error!(%problem, "lost the fleet's Redis; the last fleet state stays in force");
            }
            link.connected = false;
            link.problem = Some(problem);
        }
        metrics::gauge!(metric::FLEET_CONNECTED).set(0.0);
        if started.elapsed() > MAX_BACKOFF * 2 {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Full jitter: a random wait between half of `d` and `d`.
fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let r = aws_lc_rs::rand::fill(&mut byte).map_or(255, |()| byte[0]);
    d / 2 + d / 2 * u32::from(r) / 255
}

/// One connection's life: ends with the reason it ended.
async fn session(inner: &Arc<Inner>) -> Result<Infallible, String> {
    let url = inner.config.url.clone();
    let explain = |e: redis::RedisError| link::explain(&url, &e);
    let block = inner.config.heartbeat;
    let mut reader = link::connect(&inner.client, block + COMMAND_TIMEOUT).await.map_err(explain)?;
    let name = format!("cg-{}", inner.config.gateway_id.replace(|c: char| !c.is_ascii_graphic(), "_"));
    // The name helps `CLIENT LIST` readers; a user without the right to set it is no problem.
    let _: Result<(), _> = redis::cmd("CLIENT").arg("SETNAME").arg(&name).query_async(&mut reader).await;
    let mut writer = link::connect(&inner.client, COMMAND_TIMEOUT).await.map_err(explain)?;
    read_whole(inner, &mut reader, "connect").await.map_err(explain)?;
    {
        let mut link = inner.link();
        if !link.connected {
            tracing::info!(fleet = %inner.config.fleet, gateway = %inner.config.gateway_id, "following the fleet's Redis");
        }
        link.connected = true;
        link.problem = None;
    }
    metrics::gauge!(metric::FLEET_CONNECTED).set(1.0);
    inner.synced.send_replace(true);
    tokio::select! {
        r = follow(inner, &mut reader) => r.map_err(explain),
        r = report(inner, &mut writer) => r,
    }
}

/// What one atomic read of the fleet's keys found.
pub(super) struct Whole {
    pub(super) store_id: Option<String>,
    pub(super) epoch: u64,
    pub(super) last_id: String,
    pub(super) state: crate::store::ControlState,
}

/// The reply of the atomic read: store id, epoch, mode, revocations, last event.
type WholeReply = (Option<String>, Option<u64>, Option<String>, HashMap<String, String>, StreamRangeReply);

/// Reads the fleet's keys in one transaction, so the last event id matches the state.
pub(super) async fn read(names: &Names, con: &mut MultiplexedConnection) -> redis::RedisResult<Whole> {
    let n = names;
    let (store_id, epoch, mode, revocations, last): WholeReply = redis::pipe()
        .atomic()
        .get(&n.store_id)
        .get(&n.epoch)
        .get(&n.mode)
        .hgetall(&n.revocations)
        .cmd("XREVRANGE")
        .arg(&n.events)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    let (state, skipped) = shape::state(mode.as_deref(), &revocations);
    for s in skipped {
        tracing::warn!(what = %s, "skipped a part of the fleet's state this version cannot read");
    }
    let last_id = last.ids.first().map_or_else(|| "0-0".to_string(), |e| e.id.clone());
    Ok(Whole { store_id, epoch: epoch.unwrap_or(0), last_id, state })
}

/// Reads the fleet's state whole and puts it in force, noticing a store that was reset.
async fn read_whole(inner: &Inner, con: &mut MultiplexedConnection, why: &'static str) -> redis::RedisResult<()> {
    let mut whole = read(&inner.names, con).await?;
    // An override that has run out is kept by Redis a little longer (its TTL only cleans up);
    // it changes nothing, and this gateway has ended it already.
    let now = inner.clock.now_ms();
    whole.state.admin_override = whole.state.admin_override.filter(|o| o.active(now));
    metrics::counter!(metric::FLEET_RESYNCS, "reason" => why).increment(1);
    let gateway = inner.config.gateway_id.clone();
    let mut reset = false;
    inner.edit_fleet(|copy| {
        reset = match (&copy.store_id, &whole.store_id) {
            (Some(known), Some(now)) => known != now || whole.epoch < copy.epoch,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let retained = if reset { copy.retained.union(&copy.state.revocations) } else { copy.retained.clone() };
        if reset {
            tracing::error!(
                gateway = %gateway,
                known_store = ?copy.store_id,
                store = ?whole.store_id,
                known_epoch = copy.epoch,
                epoch = whole.epoch,
                "the fleet's Redis lost or rewound its data: its mode is taken as it is now, and every fleet \
                 revocation known before is kept (lift one with clerkgate revoke --lift)"
            );
        }
        *copy = FleetCopy {
            store_id: whole.store_id.clone(),
            epoch: whole.epoch,
            last_id: whole.last_id.clone(),
            state: whole.state.clone(),
            retained,
        };
    });
    if reset {
        inner.resets.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric::FLEET_STORE_RESETS).increment(1);
    }
    Ok(())
}

/// Follows the events stream until an error.
async fn follow(inner: &Inner, con: &mut MultiplexedConnection) -> redis::RedisResult<Infallible> {
    let block_ms = usize::try_from(inner.config.heartbeat.as_millis()).unwrap_or(5_000);
    let mut whole_at = Instant::now();
    loop {
        let (last_id, known_store, known_epoch) = {
            let view = inner.view();
            (view.fleet.last_id.clone(), view.fleet.store_id.clone(), view.fleet.epoch)
        };
        let opts = StreamReadOptions::default().block(block_ms).count(100);
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg(&opts)
            .arg("STREAMS")
            .arg(&inner.names.events)
            .arg(&last_id)
            .query_async(con)
            .await?;
        let entries: Vec<StreamId> = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect();
        if entries.is_empty() {
            // A quiet heartbeat: anything missed or rewound shows in the store's id or epoch.
            let (store_id, epoch): (Option<String>, Option<u64>) =
                redis::pipe().get(&inner.names.store_id).get(&inner.names.epoch).query_async(con).await?;
            if store_id != known_store || epoch.unwrap_or(0) != known_epoch {
                read_whole(inner, con, "drift").await?;
                whole_at = Instant::now();
            } else if whole_at.elapsed() >= inner.config.resync_interval {
                read_whole(inner, con, "periodic").await?;
                whole_at = Instant::now();
            } else {
                inner.link().last_sync_ms = Some(inner.clock.now_ms());
                inner.wake.notify_one();
            }
            continue;
        }
        for entry in entries {
            match event(&entry) {
                Some((epoch, store, change)) if Some(&store) == known_store.as_ref() || known_store.is_none() => {
                    let at = inner.view().fleet.epoch;
                    if epoch <= at {
                        inner.pass(&entry.id);
                    } else if epoch == at + 1 && known_store.is_some() {
                        tracing::info!(epoch, ?change, "applying a fleet change");
                        inner.edit_fleet(|c| {
                            c.apply(&change);
                            c.epoch = epoch;
                            c.last_id = entry.id.clone();
                        });
                    } else {
                        read_whole(inner, con, "gap").await?;
                        whole_at = Instant::now();
                        break;
                    }
                }
                Some(_) => {
                    read_whole(inner, con, "store-changed").await?;
                    whole_at = Instant::now();
                    break;
                }
                None => {
                    tracing::warn!(id = %entry.id, "skipped a fleet event this version cannot read; reading the state whole");
                    read_whole(inner, con, "unreadable-event").await?;
                    whole_at = Instant::now();
                    break;
                }
            }
        }
    }
}

/// An event's epoch, store id and change, when this build can read them.
fn event(entry: &StreamId) -> Option<(u64, String, Change)> {
    let epoch: u64 = entry.get("epoch")?;
    let store: String = entry.get("store")?;
    let change: String = entry.get("change")?;
    Some((epoch, store, serde_json::from_str(&change).ok()?))
}

/// Copies audit records and writes the acknowledgement whenever woken, and at least every
/// heartbeat.
async fn report(inner: &Inner, con: &mut MultiplexedConnection) -> Result<Infallible, String> {
    let url = inner.config.url.clone();
    let explain = |e: redis::RedisError| link::explain(&url, &e);
    loop {
        flush_audit(inner, con).await?;
        ack(inner, con).await.map_err(explain)?;
        tokio::select! {
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(inner.config.heartbeat) => {}
        }
    }
}

/// Writes this gateway's acknowledgement.
async fn ack(inner: &Inner, con: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let facts = inner.facts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let facts = facts.map(|f| f()).unwrap_or_default();
    let ack = shape::Ack {
        gateway_id: inner.config.gateway_id.clone(),
        epoch: inner.view().fleet.epoch,
        at_ms: inner.clock.now_ms(),
        mode: facts.mode,
        mode_source: facts.mode_source,
        config_hash: facts.config_hash,
        kids: facts.kids,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let json = serde_json::to_string(&ack).unwrap_or_default();
    redis::cmd("HSET").arg(&inner.names.acks).arg(&ack.gateway_id).arg(json).query_async(con).await
}

/// Where the copy of `audit.jsonl` to the fleet's stream stands: `fleet-audit.json`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct AuditOffset {
    /// Bytes of `audit.jsonl` copied (or skipped).
    offset: u64,
}

fn offset_path(local: &FileStore) -> std::path::PathBuf {
    local.dir().join("fleet-audit.json")
}

/// At the first start with the Redis backend, records from before (the gateway's history
/// alone) stay in its own `audit.jsonl`: the copy starts at the end of the file (blocking).
pub(super) fn init_audit_offset(local: &FileStore) -> Result<(), StoreError> {
    let path = offset_path(local);
    if path.exists() {
        return Ok(());
    }
    let offset = std::fs::metadata(local.audit_path()).map_or(0, |m| m.len());
    save_offset(local, AuditOffset { offset })
}

fn load_offset(local: &FileStore) -> Result<AuditOffset, StoreError> {
    Ok(super::super::file::read_json(&offset_path(local))?.unwrap_or_default())
}

fn save_offset(local: &FileStore, offset: AuditOffset) -> Result<(), StoreError> {
    let path = offset_path(local);
    let bytes = serde_json::to_vec(&offset).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    crate::fsutil::Staged::prepare(&path, &bytes)
        .and_then(crate::fsutil::Staged::publish)
        .map_err(|source| StoreError::Io { doing: "write", path, source })
}

/// The complete lines of `audit.jsonl` after `offset`: each with the offset just past it.
fn lines_after(local: &FileStore, offset: u64) -> Result<Vec<(u64, String)>, StoreError> {
    let path = local.audit_path();
    let io = |source| StoreError::Io { doing: "read the audit log", path: path.clone(), source };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    // A log shorter than the offset was replaced (`--discard-state`): start again at its top.
    let start = if offset > len { 0 } else { offset };
    file.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = Vec::new();
    let mut at = start;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        at += n as u64;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if !text.is_empty() {
            out.push((at, text));
        }
    }
    Ok(out)
}

/// This gateway's audit records not yet in the fleet's stream (blocking).
pub(super) fn unflushed(local: &FileStore) -> Result<AuditLines, StoreError> {
    let offset = load_offset(local)?.offset;
    let mut out = AuditLines::default();
    for (_, line) in lines_after(local, offset)? {
        match serde_json::from_str::<AuditRecord>(&line) {
            Ok(r) => out.records.push(r),
            Err(e) => out.skipped.push(crate::store::SkippedLine { line: 0, why: format!("not an audit event: {e}") }),
        }
    }
    Ok(out)
}

/// Copies this gateway's waiting audit records to the fleet's stream, each with its origin
/// and offset (so a reader can drop a duplicate); past `audit_buffer_max` waiting, the oldest
/// are skipped and counted.
async fn flush_audit(inner: &Inner, con: &mut MultiplexedConnection) -> Result<(), String> {
    let local = inner.local.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<(AuditOffset, Vec<(u64, String)>), StoreError> {
        let offset = load_offset(&local)?;
        Ok((offset, lines_after(&local, offset.offset)?))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let (mut offset, mut lines) = read;
    let max = inner.config.audit_buffer_max;
    if lines.len() > max {
        let dropped = lines.len() - max;
        offset.offset = lines[dropped - 1].0;
        lines.drain(..dropped);
        inner.audit_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        metrics::counter!(metric::AUDIT_DROPPED).increment(dropped as u64);
        tracing::error!(dropped, max, "the fleet's Redis was away too long: the oldest audit records waiting for it were skipped (they stay in audit.jsonl)");
    }
    inner.audit_buffered.store(lines.len() as u64, Ordering::Relaxed);
    metrics::gauge!(metric::AUDIT_BUFFERED).set(lines.len() as f64);
    let url = inner.config.url.clone();
    for batch in lines.chunks(AUDIT_BATCH) {
        let minid = inner.clock.now_ms() - AUDIT_KEEP_MS;
        let mut pipe = redis::pipe();
        for (end, line) in batch {
            pipe.cmd("XADD")
                .arg(&inner.names.audit)
                .arg("MINID")
                .arg("~")
                .arg(minid)
                .arg("*")
                .arg("origin")
                .arg(&inner.config.gateway_id)
                .arg("seq")
                .arg(*end)
                .arg("record")
                .arg(line)
                .ignore();
        }
        pipe.query_async::<()>(con).await.map_err(|e| link::explain(&url, &e))?;
        let Some((end, _)) = batch.last() else { continue };
        offset.offset = *end;
        let local = inner.local.clone();
        tokio::task::spawn_blocking(move || save_offset(&local, offset))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let left = inner.audit_buffered.load(Ordering::Relaxed).saturating_sub(batch.len() as u64);
        inner.audit_buffered.store(left, Ordering::Relaxed);
        metrics::gauge!(metric::AUDIT_BUFFERED).set(left as f64);
    }
    Ok(())
}

/// The fleet's audit stream, every record in it (bounded by its 30-day trim).
pub(super) async fn read_fleet_audit(inner: &Inner) -> Result<Vec<AuditRecord>, String> {
    let url = inner.config.url.clone();
    let explain = |e: redis::RedisError| link::explain(&url, &e);
    let mut con = link::connect(&inner.client, COMMAND_TIMEOUT).await.map_err(explain)?;
    let reply: StreamRangeReply =
        redis::cmd("XRANGE").arg(&inner.names.audit).arg("-").arg("+").query_async(&mut con).await.map_err(explain)?;
    Ok(reply
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("record"))
        .filter_map(|r| serde_json::from_str::<AuditRecord>(&r).ok())
        .collect())
}
