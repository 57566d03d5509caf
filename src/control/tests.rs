//! The control task follows a store that others write too (what a fleet store will do): the
//! next change in sequence is put in force, one already in force is skipped, and a gap — in
//! the events, or between the task's own changes — makes it read the store whole.
//!
//! The store here is the file store with a second writer beside the control task: the test
//! commits to the same files, as another gateway would, and reports (or withholds) the event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::*;
use crate::config::Config;
use crate::store::{Applied, AuditLines, FileStore, Snapshot, StoreError};

/// The file store, plus a channel on which the test reports changes "made elsewhere".
#[derive(Debug)]
struct TwoWriters {
    files: FileStore,
    elsewhere: broadcast::Sender<StoreEvent>,
}

impl ControlStore for TwoWriters {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>> {
        self.files.snapshot()
    }

    fn apply(&self, change: Change, audit: Option<AuditEvent>) -> BoxFuture<'_, Result<Applied, StoreError>> {
        self.files.apply(change, audit)
    }

    fn changes(&self) -> broadcast::Receiver<StoreEvent> {
        self.elsewhere.subscribe()
    }

    fn read_audit(&self, since_ms: i64) -> BoxFuture<'_, Result<AuditLines, StoreError>> {
        self.files.read_audit(since_ms)
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.files.probe()
    }

    fn location(&self) -> String {
        self.files.location()
    }
}

struct World {
    store: Arc<TwoWriters>,
    shared: Arc<Shared>,
    revocations: Arc<Revocations>,
    control: ControlHandle,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\n[state]\ndir = {:?}\n", dir.path());
    let config = Arc::new(Config::from_toml(&text, &Env::default()).expect("config"));
    let clock = Clock::system();
    let store =
        Arc::new(TwoWriters { files: FileStore::new(dir.path().to_path_buf()), elsewhere: broadcast::channel(16).0 });
    let snapshot = store.snapshot().await.expect("snapshot");
    let shared = Arc::new(Shared::new(Runtime::initial(config.clone(), clock.now_ms())));
    let revocations = Arc::new(Revocations::default());
    let handles = Handles {
        shared: shared.clone(),
        revocations: revocations.clone(),
        keys: Arc::new(KeyStore::new(&config, clock.clone())),
        store: store.clone(),
        clock,
        config_path: None,
        env: Env::default(),
        report: Arc::default(),
    };
    let (control, rx) = channel();
    start(handles, rx, snapshot.epoch).await.expect("start");
    World { store, shared, revocations, control, _dir: dir }
}

fn revoke(id: &str) -> Change {
    Change::Revoke {
        what: Revocation::Session(id.into()),
        entry: Entry { added_at_ms: 0, actor: "elsewhere".into(), reason: String::new() },
    }
}

fn note() -> AuditEvent {
    AuditEvent::new(0, "elsewhere", Action::RevocationAdd, Value::Null, Value::Null, "")
}

impl World {
    /// Another writer commits `change`; answers the store's epoch afterwards.
    fn commit_elsewhere(&self, change: &Change) -> u64 {
        self.store.files.commit(change, Some(&note())).expect("commit elsewhere").epoch
    }

    fn report(&self, epoch: u64, change: Change) {
        self.store.elsewhere.send(StoreEvent::Committed { epoch, change }).expect("the control task listens");
    }

    fn revoked(&self, id: &str) -> bool {
        self.revocations.current().sessions.contains_key(id)
    }

    async fn until(&self, what: &str, done: impl Fn(&World) -> bool) {
        for _ in 0..500 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gave up waiting for: {what}");
    }
}

#[tokio::test]
async fn changes_made_elsewhere_are_followed_in_order_and_a_gap_reads_the_store_whole() {
    let w = world().await;

    // The next change in sequence is put in force.
    let bypass = ModeSetting {
        mode: Mode::Bypass,
        source: ModeSource::Admin,
        reason: "set elsewhere".into(),
        actor: "admin:elsewhere".into(),
        since_ms: w.shared.load().file_mode.since_ms,
        expires_at_ms: Some(i64::MAX / 2),
    };
    let change = Change::SetOverride(bypass.clone());
    let epoch = w.commit_elsewhere(&change);
    assert_eq!(epoch, 1);
    w.report(epoch, change);
    w.until("the override set elsewhere is in force", |w| w.shared.load().admin_override.as_ref() == Some(&bypass))
        .await;

    // Two more changes, only the second reported: a gap, so the task reads the store whole.
    w.commit_elsewhere(&revoke("sess_unreported"));
    let change = revoke("sess_reported");
    let epoch = w.commit_elsewhere(&change);
    w.report(epoch, change);
    w.until("both revocations are in force", |w| w.revoked("sess_unreported") && w.revoked("sess_reported")).await;

    // A change made elsewhere between two of the task's own: its own commit skips an epoch,
    // so it reads the store whole and the other change is in force too.
    w.commit_elsewhere(&revoke("sess_between"));
    let list =
        w.control.revoke(Revocation::Session("sess_own".into()), String::new(), Actor::Timer).await.expect("revoke");
    assert!(list.sessions.contains_key("sess_own"));
    w.until("the change made between is in force", |w| w.revoked("sess_between")).await;

    // A report of a change already in force changes nothing.
    w.report(1, Change::ClearOverride);
    w.until("the stale report is taken", |w| w.store.elsewhere.is_empty()).await;
    let after =
        w.control.revoke(Revocation::Session("sess_last".into()), String::new(), Actor::Timer).await.expect("revoke");
    assert!(after.sessions.contains_key("sess_last"));
    assert_eq!(w.shared.load().admin_override.as_ref(), Some(&bypass), "a stale report was applied");
}
