//! Walking every user of the instance (clerk-ops §8.3): pages of 500 in `created_at` order with
//! the cursor (`starting_after`), falling back to offsets when the cursor is refused or
//! ignored, each page's users handled with bounded concurrency, and a [`Position`] that a
//! checkpoint file keeps so an interrupted walk resumes where it stopped.
//!
//! Never skipping a user: the position only moves past a page once every user of it is done;
//! within the page, the users done are listed. A resumed walk fetches the same page again (the
//! order is ascending creation, so users who sign up meanwhile come after it) and skips those
//! listed. Never revoking twice is the per-user step's job: it lists a user's sessions afresh
//! and revokes only those still active or pending, so a user redone after a kill finds the
//! sessions it had revoked already ended.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::clerk_api::{ApiError, Client, ErrorKind, User, UserPage, PAGE_LIMIT};

/// Where a walk is: the page it is on, and the users of that page already done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The page being worked on.
    pub page: UserPage,
    /// Users in the pages before it (the offset to fall back to).
    pub users_before_page: u64,
    /// `created_at` of the last user before the page, to notice a cursor that is ignored.
    pub after_created_at: Option<i64>,
    /// Users of the current page already done.
    pub page_done: BTreeSet<String>,
    /// The walk reached a short page: every user is done.
    pub finished: bool,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            page: UserPage::Cursor { after: None },
            users_before_page: 0,
            after_created_at: None,
            page_done: BTreeSet::new(),
            finished: false,
        }
    }
}

impl Position {
    /// `cursor` or `offset`.
    pub fn paging(&self) -> &'static str {
        match self.page {
            UserPage::Cursor { .. } => "cursor",
            UserPage::Offset { .. } => "offset",
        }
    }
}

/// Fetches the page at `pos`, switching to offsets when the cursor is refused (400/422) or
/// ignored (the page starts before the last user already seen).
async fn fetch_page(client: &Client, pos: &mut Position) -> Result<Vec<User>, ApiError> {
    let answer = client.users(&pos.page, PAGE_LIMIT).await;
    let cursor_ignored = |users: &[User]| match (&pos.page, users.first()) {
        (UserPage::Cursor { after: Some(after) }, Some(first)) => {
            first.id == *after || matches!((first.created_at, pos.after_created_at), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    };
    let fall_back = match &answer {
        Err(e) => e.kind == ErrorKind::Rejected && matches!(e.status, Some(400 | 422)) && pos.paging() == "cursor",
        Ok(users) => cursor_ignored(users),
    };
    if !fall_back {
        return answer;
    }
    tracing::warn!("the Backend API does not page users by cursor (starting_after); falling back to offsets");
    pos.page = UserPage::Offset { offset: pos.users_before_page };
    client.users(&pos.page, PAGE_LIMIT).await
}

/// Walks every user from `pos`, calling `each` for up to `concurrency` users at once, and
/// `done` with the position after each finished user (with its outcome, in completion order)
/// and after each page (with `None`). Returns at the end, or at the first error (the position
/// then still names every user not yet done).
pub async fn walk<T, F, Fut>(
    client: &Client,
    pos: &mut Position,
    concurrency: usize,
    each: F,
    mut done: impl FnMut(&Position, Option<T>),
) -> Result<(), ApiError>
where
    F: Fn(User) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    while !pos.finished {
        let page = fetch_page(client, pos).await?;
        let todo: Vec<User> = page.iter().filter(|u| !pos.page_done.contains(&u.id)).cloned().collect();
        let mut running = stream::iter(todo)
            .map(|u| {
                let id = u.id.clone();
                let work = each(u);
                async move { (id, work.await) }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((id, outcome)) = running.next().await {
            let value = outcome?;
            pos.page_done.insert(id);
            done(pos, Some(value));
        }
        drop(running);
        // Every user of the page is done: move past it.
        let last = page.last();
        pos.users_before_page += page.len() as u64;
        pos.after_created_at = last.and_then(|u| u.created_at).or(pos.after_created_at);
        pos.page = match (&pos.page, last) {
            (UserPage::Cursor { .. }, Some(last)) => UserPage::Cursor { after: Some(last.id.clone()) },
            (UserPage::Offset { .. }, _) => UserPage::Offset { offset: pos.users_before_page },
            (page, None) => page.clone(),
        };
        pos.page_done.clear();
        pos.finished = page.len() < PAGE_LIMIT as usize;
        done(pos, None);
    }
    Ok(())
}

/// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise.
pub enum Progress {
    /// indicatif, on a terminal.
    Bar(indicatif::ProgressBar),
    /// Plain lines, at most one per interval.
    Lines {
        /// When the last line was written.
        last: Instant,
    },
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// A bar over `total` users when stderr is a terminal, else plain lines.
    pub fn new(total: Option<u64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { last: Instant::now() };
        }
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} users  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        Progress::Bar(bar)
    }

    /// Shows `users` done and `what` (the counts so far).
    pub fn update(&mut self, users: u64, total: Option<u64>, what: &str) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(users);
                bar.set_message(what.to_string());
            }
            Progress::Lines { last } => {
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    let of = total.map_or_else(String::new, |t| format!("/{t}"));
                    eprintln!("progress: {users}{of} users, {what}");
                }
            }
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The checkpoint file of a walk, in `state.dir`.
pub fn checkpoint_path(state_dir: &Path) -> PathBuf {
    state_dir.join("revoke-remote.json")
}

/// Reads a checkpoint; `Ok(None)` when there is none.
pub fn read_checkpoint<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            format!("{} is not a checkpoint this clerkgate can read ({e}); move it aside to start over", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a checkpoint atomically (a reader sees the old one or the new one).
pub fn write_checkpoint<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(path, &bytes)
        .map_err(|e| format!("cannot write the checkpoint {}: {e}", path.display()))
}
