//! Reload on file change: Kubernetes updates a mounted ConfigMap or Secret without a signal.
//!
//! The kubelet writes the new files into a fresh timestamped directory beside the old one and
//! swaps the `..data` symlink over atomically; the files the gateway opens are symlinks through
//! `..data`, so their own inodes never change and a watch on them would miss the swap. So the
//! watcher watches, non-recursively, the *directory* of the config file and of every file the
//! config names (`*_file` secrets, certificates: [`ControlHandle::watched_files`]), and reacts
//! to an event that names one of those files or `..data` (as configmap-reload reacts to the
//! creation of `..data`). After a burst has been quiet for [`QUIET`] it asks the control task
//! for a reload with [`Actor::Watch`] — the same reload as SIGHUP: validated, audited, a bad
//! config keeps the running one — but one that happens only when a file holds something else
//! than at the last reload attempt ([`ReloadWhen`](crate::control::ReloadWhen)), so `touch`, an
//! editor's swap file or the kubelet's other files make no audit line.
//!
//! When the watcher cannot be created — in practice the per-user inotify instance or watch
//! limit is exhausted — the files' content is checked every [`POLL_INTERVAL`] instead, said
//! once at WARN. After a reload that names other files, the watcher is armed afresh.
//!
//! Nothing here is on the request path, nothing blocks the runtime (notify delivers events on
//! its own thread, which only wakes this task), and an odd event at worst asks for a check.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::{Actor, ControlError, ControlHandle};

/// A burst of events is over when nothing has happened for this long.
pub const QUIET: Duration = Duration::from_millis(200);

/// A burst that goes on longer than this is acted on anyway (a check, not a reload, when
/// nothing the gateway reads has changed).
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// How often the files are checked when they cannot be watched.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The name the kubelet swaps in a mounted ConfigMap or Secret directory.
const KUBELET_DATA: &str = "..data";

/// How the gateway learns that its files changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WatchMode {
    /// Watch their directories (inotify); check every [`POLL_INTERVAL`] when that fails.
    #[default]
    Events,
    /// Check their content this often (what `Events` falls back to; tests force it).
    Poll(Duration),
    /// Do not watch: reload on SIGHUP and `POST /reload` only (`clerkgate run --no-watch`).
    Off,
}

/// Starts watching, unless `mode` is [`WatchMode::Off`]. The directories are watched when
/// this returns (a change right after the start is not missed). The task ends when the control
/// task does; abort it to stop earlier.
pub fn spawn(mode: WatchMode, control: ControlHandle) -> Option<JoinHandle<()>> {
    let every = match mode {
        WatchMode::Off => return None,
        WatchMode::Poll(every) => every,
        WatchMode::Events => {
            let mut files = control.watched_files();
            let paths = files.borrow_and_update().clone();
            let stirred = Arc::new(Notify::new());
            match arm(&paths, stirred.clone()) {
                Ok(watcher) => return Some(tokio::spawn(watch_events(control, files, stirred, watcher))),
                Err(e) => {
                    fall_back(&e);
                    POLL_INTERVAL
                }
            }
        }
    };
    Some(tokio::spawn(poll(control, every)))
}

/// Asks for a reload if a file changed. False when the control task is gone.
async fn check(control: &ControlHandle) -> bool {
    match control.reload_if_files_changed(Actor::Watch).await {
        Ok(outcome) => {
            tracing::debug!(hash = %outcome.hash, changed = outcome.changed, "file watch: checked");
            true
        }
        Err(ControlError::Closed) => false,
        // Refused: the control task has logged, audited and reported it.
        Err(_) => true,
    }
}

async fn poll(control: ControlHandle, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !check(&control).await {
            return;
        }
    }
}

/// Checks after each burst of events; arms a new watcher when the files change. The watcher is
/// held, never read: dropping it stops its thread.
async fn watch_events(
    control: ControlHandle,
    mut files: watch::Receiver<Vec<PathBuf>>,
    stirred: Arc<Notify>,
    mut _watcher: RecommendedWatcher,
) {
    let mut debounce = Debounce::default();
    loop {
        tokio::select! {
            () = settled(&stirred, &mut debounce) => {
                if !check(&control).await {
                    return;
                }
            }
            changed = files.changed() => {
                if changed.is_err() {
                    return;
                }
                let paths = files.borrow_and_update().clone();
                // The new watcher is armed before the old one goes; a change in between is
                // caught by the check that follows.
                match arm(&paths, stirred.clone()) {
                    Ok(watcher) => _watcher = watcher,
                    Err(e) => {
                        fall_back(&e);
                        return poll(control, POLL_INTERVAL).await;
                    }
                }
                stirred.notify_one();
            }
        }
    }
}

fn fall_back(error: &notify::Error) {
    tracing::warn!(
        error = %error,
        "cannot watch the config's directories; checking its files every {}s instead \
         (the inotify limits fs.inotify.max_user_instances and max_user_watches are the usual cause)",
        POLL_INTERVAL.as_secs()
    );
}

/// Watches the directories of `paths`; an event that concerns one of them wakes `stirred`.
fn arm(paths: &[PathBuf], stirred: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let (dirs, names) = targets(paths);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
        Ok(event) if concerns(&event, &names) => stirred.notify_one(),
        Ok(_) => {}
        Err(e) => {
            // Whatever it was (a dropped event queue, a removed directory), look at the files.
            tracing::warn!(error = %e, "file watch: the watcher reported an error; checking the files");
            stirred.notify_one();
        }
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tracing::info!(dirs = ?dirs, "watching the config's directories; a change to its files reloads it");
    Ok(watcher)
}

/// The directories to watch and the file names that matter in them (`..data` among them).
fn targets(paths: &[PathBuf]) -> (BTreeSet<PathBuf>, BTreeSet<OsString>) {
    let mut dirs = BTreeSet::new();
    let mut names = BTreeSet::from([OsString::from(KUBELET_DATA)]);
    for p in paths {
        dirs.insert(crate::fsutil::parent(p).to_path_buf());
        if let Some(name) = p.file_name() {
            names.insert(name.to_os_string());
        }
    }
    (dirs, names)
}

/// Whether `event` may have changed a watched file: it names one of `names` (in any watched
/// directory), or cannot say which files it is about. Reads are not changes — the gateway's
/// own reads of its files would otherwise wake it in a loop — but the close of a file opened
/// for writing is.
fn concerns(event: &Event, names: &BTreeSet<OsString>) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    event.need_rescan()
        || event.paths.is_empty()
        || event.paths.iter().any(|p| p.file_name().is_some_and(|n| names.contains(n)))
}

/// A burst of events: when it began and when it was last added to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Debounce {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    fn stirred(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the burst counts as over: [`QUIET`] after its last event, or [`MAX_DELAY`] after
    /// its first, whichever is sooner. `None` with no burst.
    fn due(&self) -> Option<Instant> {
        Some((self.last? + QUIET).min(self.first? + MAX_DELAY))
    }
}

/// Completes when a burst of wake-ups on `stirred` is over. Cancel-safe: the burst so far is
/// kept in `debounce`, and a wake-up not yet taken stays with `stirred`.
async fn settled(stirred: &Notify, debounce: &mut Debounce) {
    loop {
        match debounce.due() {
            None => {
                stirred.notified().await;
                debounce.stirred(Instant::now());
            }
            Some(at) => tokio::select! {
                () = stirred.notified() => debounce.stirred(Instant::now()),
                () = tokio::time::sleep_until(at) => {
                    *debounce = Debounce::default();
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        paths.iter().fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn targets_are_the_directories_and_the_names_as_written() {
        let paths = [
            PathBuf::from("clerkgate.toml"),
            PathBuf::from("/var/run/secrets/clerk/secret_key"),
            PathBuf::from("/var/run/secrets/clerk/jwt_key"),
        ];
        let (dirs, names) = targets(&paths);
        assert_eq!(dirs, BTreeSet::from([PathBuf::from("."), PathBuf::from("/var/run/secrets/clerk")]));
        let names: Vec<&str> = names.iter().filter_map(|n| n.to_str()).collect();
        assert_eq!(names, ["..data", "clerkgate.toml", "jwt_key", "secret_key"]);
    }

    #[test]
    fn which_events_concern_a_watched_file() {
        let (_, names) = targets(&[PathBuf::from("/etc/clerkgate/clerkgate.toml")]);
        let swap = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let cases: &[(EventKind, &[&str], bool, &str)] = &[
            (swap, &["/etc/clerkgate/..data"], true, "the kubelet's swap"),
            (EventKind::Create(CreateKind::Any), &["/etc/clerkgate/..data"], true, "..data created"),
            (write, &["/etc/clerkgate/clerkgate.toml"], true, "written in place"),
            (
                swap,
                &["/etc/clerkgate/.clerkgate.toml.swp", "/etc/clerkgate/clerkgate.toml"],
                true,
                "an editor's rename",
            ),
            (EventKind::Remove(RemoveKind::File), &["/etc/clerkgate/clerkgate.toml"], true, "removed"),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/etc/clerkgate/clerkgate.toml"],
                true,
                "closed after writing",
            ),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                &["/etc/clerkgate/clerkgate.toml"],
                true,
                "touched",
            ),
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), &["/etc/clerkgate/clerkgate.toml"], false, "opened"),
            (EventKind::Access(AccessKind::Close(AccessMode::Read)), &["/etc/clerkgate/clerkgate.toml"], false, "read"),
            (write, &["/etc/clerkgate/notes.txt"], false, "another file"),
            (swap, &["/etc/clerkgate/..data_tmp"], false, "the kubelet's temporary link"),
            (
                EventKind::Create(CreateKind::Folder),
                &["/etc/clerkgate/..2026_11_29_b"],
                false,
                "the new timestamped dir",
            ),
            (EventKind::Any, &[], true, "an event about no file in particular"),
            (EventKind::Other, &["/etc/clerkgate/clerkgate.toml"], true, "other"),
        ];
        for (kind, paths, want, what) in cases {
            assert_eq!(concerns(&event(*kind, paths), &names), *want, "{what}: {kind:?} {paths:?}");
        }
        let rescan = event(EventKind::Other, &[]).set_flag(notify::event::Flag::Rescan);
        assert!(concerns(&rescan, &names), "a dropped queue means anything may have changed");
    }

    #[test]
    fn a_burst_is_due_quiet_after_its_last_event_but_never_later_than_max_delay() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut d = Debounce::default();
        assert_eq!(d.due(), None);
        d.stirred(ms(0));
        assert_eq!(d.due(), Some(ms(200)));
        d.stirred(ms(150));
        assert_eq!(d.due(), Some(ms(350)), "a later event pushes it back");
        for n in (300..=1900).step_by(100) {
            d.stirred(ms(n));
        }
        assert_eq!(d.due(), Some(ms(2000)), "but not past MAX_DELAY after the first");
    }

    #[tokio::test(start_paused = true)]
    async fn settled_completes_once_per_burst() {
        let stirred = Arc::new(Notify::new());
        let mut debounce = Debounce::default();
        let t0 = Instant::now();
        let poke = |after_ms: u64| {
            let stirred = stirred.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                stirred.notify_one();
            })
        };
        for at in [10, 100, 250] {
            poke(at);
        }
        settled(&stirred, &mut debounce).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(450), "200 ms after the burst's last event");
        assert_eq!(debounce, Debounce::default());

        // Nothing more: it waits (a wake-up taken during a check is not lost, though).
        let waiting = tokio::time::timeout(Duration::from_secs(60), settled(&stirred, &mut debounce)).await;
        assert!(waiting.is_err(), "no burst, no completion");
        stirred.notify_one();
        let t1 = Instant::now();
        settled(&stirred, &mut debounce).await;
        assert_eq!(Instant::now() - t1, QUIET);
    }
}
