//! The fleet seen from outside a gateway: the operator's writes (`clerkgate mode`, `revoke`
//! with the Redis backend) through the one write script, and `clerkgate fleet status`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use super::link::{self, COMMAND_TIMEOUT};
use super::names::Names;
use super::shape::{self, Ack};

use crate::config::RedisConfig;
use crate::mode::ModeSetting;
use crate::store::{AuditEvent, Change};

/// How long the audit stream keeps a record (its `MINID` trim).
pub(super) const AUDIT_KEEP_MS: i64 = 30 * 24 * 3600 * 1000;

/// About how many change events the stream keeps (`MAXLEN ~`); a gateway further behind
/// reads the state whole.
pub(super) const EVENTS_KEEP: u64 = 10_000;

/// A connection to one fleet's keys.
#[derive(Clone)]
pub struct FleetClient {
    con: MultiplexedConnection,
    names: Names,
    url: String,
    origin: String,
}

impl std::fmt::Debug for FleetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetClient").field("url", &self.url).field("names", &self.names).finish()
    }
}

/// A change written: the epoch it took the fleet to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The fleet's epoch after the change.
    pub epoch: u64,
    /// Its entry in the events stream.
    pub event_id: String,
}

/// The fleet as a whole: `clerkgate fleet status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The fleet's name.
    pub fleet: String,
    /// The fleet's epoch (changes so far).
    pub epoch: u64,
    /// The store's id; another one than before means the store lost its data.
    pub store_id: Option<String>,
    /// The fleet's mode override, if one is set.
    pub mode: Option<ModeSetting>,
    /// The fleet's revocations: sessions, users, and whether a cut-off is set.
    pub revocations: (usize, usize, bool),
    /// Every gateway that acknowledged, newest report first.
    pub gateways: Vec<Member>,
    /// When this was read, ms since the epoch.
    pub at_ms: i64,
}

/// One gateway in `fleet status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its last acknowledgement.
    #[serde(flatten)]
    pub ack: Ack,
    /// How long ago it reported, in ms.
    pub age_ms: i64,
    /// Why it lags, when it does: silent for longer than three heartbeats, or behind the
    /// fleet's epoch.
    pub lagging: Option<String>,
}

impl FleetClient {
    /// Connects to `config`'s fleet as `user` with `password` (the operator's; `None`: the
    /// configured ones). `origin` names the writer in the audit stream.
    pub async fn connect(
        config: &RedisConfig,
        user: Option<&str>,
        password: Option<&str>,
        origin: &str,
    ) -> Result<FleetClient, String> {
        let client = link::client(config, user, password)?;
        let con = link::connect(&client, COMMAND_TIMEOUT).await.map_err(|e| link::explain(&config.url, &e))?;
        Ok(FleetClient {
            con,
            names: Names::new(&config.key_prefix, &config.fleet),
            url: config.url.clone(),
            origin: origin.to_string(),
        })
    }

    /// A client on a connection already open (a gateway reading its own fleet).
    pub(super) fn on(con: MultiplexedConnection, names: Names, url: &str, origin: &str) -> FleetClient {
        FleetClient { con, names, url: url.to_string(), origin: origin.to_string() }
    }

    fn explain(&self, e: &redis::RedisError) -> String {
        link::explain(&self.url, e)
    }

    /// Writes `change` for the whole fleet with its audit record: state, event and audit in
    /// one script, so they never disagree.
    pub async fn write(&mut self, change: &Change, audit: &AuditEvent) -> Result<Written, String> {
        let now = audit.time_ms;
        let op = shape::op(change, now)?;
        let change_json = serde_json::to_string(change).map_err(|e| e.to_string())?;
        let audit_json = serde_json::to_string(audit).map_err(|e| e.to_string())?;
        let new_store_id = format!("{:032x}", rand_u128());
        let n = &self.names;
        let script = redis::Script::new(include_str!("write.lua"));
        let (epoch, event_id, _store): (u64, String, String) = script
            .key(&n.store_id)
            .key(&n.epoch)
            .key(&n.mode)
            .key(&n.revocations)
            .key(&n.events)
            .key(&n.audit)
            .arg(new_store_id)
            .arg(op.name)
            .arg(change_json)
            .arg(audit_json)
            .arg(&self.origin)
            .arg(op.a)
            .arg(op.b)
            .arg(format!("{}", now - AUDIT_KEEP_MS))
            .arg(EVENTS_KEEP)
            .invoke_async(&mut self.con)
            .await
            .map_err(|e| self.explain(&e))?;
        Ok(Written { epoch, event_id })
    }

    /// The fleet now: its epoch, state and every gateway's acknowledgement; a gateway lags when
    /// its report is older than three `heartbeat`s or it has not applied `epoch`.
    pub async fn status(&mut self, heartbeat: Duration, now_ms: i64) -> Result<FleetStatus, String> {
        let whole = super::follow::read(&self.names, &mut self.con).await.map_err(|e| self.explain(&e))?;
        let acks: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.names.acks)
            .query_async(&mut self.con)
            .await
            .map_err(|e| self.explain(&e))?;
        let (epoch, state, store_id) = (whole.epoch, whole.state, whole.store_id);
        let silent_ms = 3 * i64::try_from(heartbeat.as_millis()).unwrap_or(i64::MAX / 4);
        let mut gateways: Vec<Member> = acks
            .into_values()
            .filter_map(|v| serde_json::from_str::<Ack>(&v).ok())
            .map(|ack| {
                let age_ms = now_ms - ack.at_ms;
                let lagging = if age_ms > silent_ms {
                    Some(format!("no report for {}", crate::state::human(Duration::from_millis(age_ms.max(0) as u64))))
                } else if ack.epoch < epoch {
                    Some(format!("at epoch {} of {epoch}", ack.epoch))
                } else {
                    None
                };
                Member { ack, age_ms, lagging }
            })
            .collect();
        gateways.sort_by(|a, b| a.age_ms.cmp(&b.age_ms).then_with(|| a.ack.gateway_id.cmp(&b.ack.gateway_id)));
        Ok(FleetStatus {
            fleet: fleet_name(&self.names.acks),
            epoch,
            store_id,
            mode: state.admin_override,
            revocations: state.revocations.counts(),
            gateways,
            at_ms: now_ms,
        })
    }

    /// Waits until every gateway that reported within three heartbeats has applied `epoch`, or
    /// `timeout` passes; answers the gateways that have, those that have not, and how long it
    /// took.
    pub async fn wait_for(
        &mut self,
        epoch: u64,
        heartbeat: Duration,
        timeout: Duration,
        now_ms: impl Fn() -> i64,
    ) -> Result<Propagation, String> {
        let started = Instant::now();
        loop {
            let status = self.status(heartbeat, now_ms()).await?;
            let live: Vec<&Member> =
                status.gateways.iter().filter(|m| m.age_ms <= 3 * heartbeat.as_millis() as i64).collect();
            let (done, behind): (Vec<&Member>, Vec<&Member>) = live.iter().partition(|m| m.ack.epoch >= epoch);
            if behind.is_empty() || started.elapsed() >= timeout {
                return Ok(Propagation {
                    applied: done.iter().map(|m| m.ack.gateway_id.clone()).collect(),
                    behind: behind.iter().map(|m| m.ack.gateway_id.clone()).collect(),
                    elapsed: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Where a fleet change has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagation {
    /// The live gateways that applied it.
    pub applied: Vec<String>,
    /// The live gateways that had not when the wait ended.
    pub behind: Vec<String>,
    /// How long the wait took.
    pub elapsed: Duration,
}

/// The fleet's name, read back from a key name (`prefix:{fleet}:acks`).
fn fleet_name(key: &str) -> String {
    key.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(f, _)| f.to_string()).unwrap_or_default()
}

/// 128 random bits for a store id, from the OS.
fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_or(0, |()| u128::from_le_bytes(bytes))
}
