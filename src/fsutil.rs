//! Small filesystem helpers shared by everything that persists state.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that readers see either the old file or the new one, never a
/// torn one: write a temporary file beside it, fsync it, rename it over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    Staged::prepare(path, bytes)?.publish()
}

/// A new version of a file, written and fsynced beside it but not yet in place: the first half
/// of [`write_atomic`]. [`Staged::publish`] renames it over the file; dropping it unpublished
/// removes it, so a change that fails later (say, its audit line) leaves the file as it was.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    published: bool,
}

impl Staged {
    /// Writes `bytes` to a temporary file beside `path` and fsyncs it. The most likely failures
    /// of a durable write (no space, no permission, a read-only volume) happen here.
    pub fn prepare(path: &Path, bytes: &[u8]) -> std::io::Result<Staged> {
        std::fs::create_dir_all(parent(path))?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
        let tmp = parent(path).join(format!(".{file_name}.tmp-{}", std::process::id()));
        let staged = Staged { tmp, path: path.to_path_buf(), published: false };
        let mut f = std::fs::File::create(&staged.tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(staged)
    }

    /// Renames the new version over the file and fsyncs the directory.
    pub fn publish(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, &self.path)?;
        self.published = true;
        if let Ok(d) = std::fs::File::open(parent(&self.path)) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The file this will replace.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Proves that `dir` takes a durable write now: writes a small probe file in it, fsyncs it and
/// removes it. Answers the probe file's path with the error, so a message can name it.
pub fn probe_writable(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let probe = dir.join(format!(".clerkgate-probe-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(b"clerkgate checks that this directory can be written\n")?;
        f.sync_all()
    };
    let written = write();
    let removed = std::fs::remove_file(&probe);
    match (written, removed) {
        (Err(e), _) => Err((probe, e)),
        (Ok(()), Err(e)) => Err((probe, e)),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The directory `path` is in: `.` for a bare file name, as the OS resolves it.
pub fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpublished_version_leaves_the_file_and_no_temporary_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").expect("write");
        let staged = Staged::prepare(&path, b"new").expect("prepare");
        drop(staged);
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "the temporary file is removed");
        Staged::prepare(&path, b"new").expect("prepare").publish().expect("publish");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn a_probe_leaves_nothing_behind_and_names_the_file_it_could_not_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        probe_writable(dir.path()).expect("a writable dir");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        let (path, _) = probe_writable(&dir.path().join("missing")).expect_err("no such dir");
        assert!(path.starts_with(dir.path().join("missing")), "{}", path.display());
    }
}
