//! The files a config was read from, and what they held when it was.
//!
//! A reload asked for by the file watcher ([`super::ReloadWhen::FilesChanged`]) goes ahead only when
//! one of these files holds something else than at the last reload attempt: editors, the
//! kubelet and `touch` stir a directory without changing what the gateway would load, and
//! each of those would otherwise be an audited reload.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Read at most this much of a file to fingerprint it; more counts as one more change.
const MAX_FINGERPRINTED: u64 = 16 * 1024 * 1024;

/// The config file and every file it names (`Origin::files`), as written (relative to the
/// working directory, as they are read).
pub fn watched(config_path: Option<&Path>, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = config_path.into_iter().map(Path::to_path_buf).chain(files.iter().cloned()).collect();
    all.sort();
    all.dedup();
    all
}

/// What each file held: a SHA-256 of its content, through symlinks (the kubelet's files are
/// symlinks through `..data`), or why it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<PathBuf, Result<Vec<u8>, std::io::ErrorKind>>);

impl Fingerprint {
    /// Reads every file in `paths` now (blocking I/O).
    pub fn of(paths: &[PathBuf]) -> Fingerprint {
        let mut fp = Fingerprint::default();
        fp.add(paths);
        fp
    }

    /// Reads the files in `paths` it does not hold yet; keeps what it has for the others, so
    /// that the content read before a load stays what the load is compared with.
    pub fn add(&mut self, paths: &[PathBuf]) {
        for p in paths {
            if !self.0.contains_key(p) {
                self.0.insert(p.clone(), digest(p));
            }
        }
    }

    /// Only the files in `paths` (a reload that no longer names a file stops comparing it).
    pub fn keep_only(&mut self, paths: &[PathBuf]) {
        self.0.retain(|p, _| paths.contains(p));
    }
}

fn digest(path: &Path) -> Result<Vec<u8>, std::io::ErrorKind> {
    let file = std::fs::File::open(path).map_err(|e| e.kind())?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut reader = file.take(MAX_FINGERPRINTED);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(ctx.finish().as_ref().to_vec()),
            Ok(n) => ctx.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_not_the_inode_or_the_timestamps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.toml");
        std::fs::write(&a, "one").expect("write");
        let paths = vec![a.clone()];
        let before = Fingerprint::of(&paths);

        // Touched, and replaced by a new inode with the same content: the same.
        std::fs::File::options().append(true).open(&a).expect("open").set_modified(std::time::SystemTime::now()).ok();
        std::fs::write(dir.path().join("b.tmp"), "one").expect("write");
        std::fs::rename(dir.path().join("b.tmp"), &a).expect("rename");
        assert_eq!(Fingerprint::of(&paths), before);

        std::fs::write(&a, "two").expect("write");
        assert_ne!(Fingerprint::of(&paths), before);
        std::fs::remove_file(&a).expect("remove");
        let gone = Fingerprint::of(&paths);
        assert_ne!(gone, before);
        assert_eq!(gone, Fingerprint::of(&paths), "a missing file is the same missing file");
    }

    #[test]
    fn follows_the_kubelet_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for (ts, content) in [("..2026_a", "one"), ("..2026_b", "two")] {
            std::fs::create_dir(d.join(ts)).expect("mkdir");
            std::fs::write(d.join(ts).join("sk"), content).expect("write");
        }
        std::os::unix::fs::symlink("..2026_a", d.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/sk", d.join("sk")).expect("symlink");
        let paths = vec![d.join("sk")];
        let before = Fingerprint::of(&paths);
        std::os::unix::fs::symlink("..2026_b", d.join("..data_tmp")).expect("symlink");
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap");
        assert_ne!(Fingerprint::of(&paths), before, "the swap changed what sk holds");
    }

    #[test]
    fn add_keeps_what_was_read_before_and_keep_only_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "one").expect("write");
        std::fs::write(&b, "x").expect("write");
        let mut fp = Fingerprint::of(std::slice::from_ref(&a));
        std::fs::write(&a, "two").expect("write");
        fp.add(&[a.clone(), b.clone()]);
        assert_ne!(fp, Fingerprint::of(&[a.clone(), b.clone()]), "a keeps its earlier content");
        fp.keep_only(std::slice::from_ref(&b));
        assert_eq!(fp, Fingerprint::of(std::slice::from_ref(&b)));
        assert_eq!(watched(Some(&b), &[a.clone(), b.clone()]), vec![a, b]);
    }
}
