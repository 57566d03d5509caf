//! `[admin]` as the CLI reads it to reach a running gateway: the listen address and the token,
//! from the file alone. The rest of the file is not validated — an operator must be able to
//! reach the admin API with a config whose other sections are broken (a refused reload) or
//! name secrets only the gateway's user can read — and the environment is not consulted: the
//! CLI decides where the file stands among its token sources. [`state_dir`] reads `[state] dir`
//! the same way, for the commands that read the gateway's records without it (the incident
//! report when no gateway runs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::raw::{RawAdmin, RawState};
use super::{ConfigErrors, ConfigProblem, Secret};

/// What a config file says about reaching its admin API.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// `admin.listen`, when the file sets it.
    pub listen: Option<SocketAddr>,
    /// The token from `admin.token_file` (read now, relative to the working directory as for
    /// `run`) or `admin.token`, with the key it came from.
    pub token: Option<(Secret, String)>,
}

impl AdminAccess {
    /// Reads `[admin]` from the file at `path`.
    pub fn load(path: &Path) -> Result<AdminAccess, ConfigErrors> {
        let raw: RawAdmin = section(path, "admin")?;
        let listen =
            match raw.listen {
                None => None,
                Some(text) => Some(text.parse().map_err(|_| {
                    problem("admin.listen", format!("{text:?} is not an address like \"127.0.0.1:9901\""))
                })?),
            };
        let token = match (raw.token_file, raw.token) {
            (Some(file), _) => {
                let value = std::fs::read_to_string(&file)
                    .map_err(|e| problem("admin.token_file", format!("cannot read {file}: {e}")))?;
                Some((Secret::new(value.trim()), format!("admin.token_file ({file})")))
            }
            (None, Some(inline)) => Some((Secret::new(inline.trim()), "admin.token".to_string())),
            (None, None) => None,
        };
        Ok(AdminAccess { listen, token: token.filter(|(t, _)| !t.expose().is_empty()) })
    }
}

/// `state.dir` of the file at `path` (its default when the file does not set it), relative to
/// the working directory as for `run`. Nothing else in the file is read.
pub fn state_dir(path: &Path) -> Result<PathBuf, ConfigErrors> {
    let raw: RawState = section(path, "state")?;
    Ok(PathBuf::from(raw.dir.unwrap_or_else(|| super::DEFAULT_STATE_DIR.to_string())))
}

fn problem(key: &str, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigProblem { key: key.into(), message }])
}

/// The section `name` of the TOML file at `path`, alone (its default when absent).
fn section<T: serde::de::DeserializeOwned + Default>(path: &Path, name: &str) -> Result<T, ConfigErrors> {
    let text =
        std::fs::read_to_string(path).map_err(|e| problem("(file)", format!("cannot read {}: {e}", path.display())))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| problem("(file)", format!("not valid TOML: {}", e.message().trim())))?;
    match table.remove(name) {
        None => Ok(T::default()),
        Some(section) => section.try_into().map_err(|e: toml::de::Error| problem(name, e.message().trim().into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AdminAccess, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clerkgate.toml");
        std::fs::write(&path, text).unwrap();
        AdminAccess::load(&path)
    }

    #[test]
    fn reads_admin_alone_and_says_where_the_token_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.display().to_string();
        // A broken section elsewhere does not stop the CLI from reaching the gateway.
        let text = format!("[server]\nlisten = 42\n[admin]\nlisten = \"127.0.0.1:19901\"\ntoken_file = {path:?}\n");
        let access = load(&text).unwrap();
        assert_eq!(access.listen, Some("127.0.0.1:19901".parse().unwrap()));
        let (token, from) = access.token.unwrap();
        assert_eq!((token.expose(), from), ("from-file", format!("admin.token_file ({path})")));

        let access = load("[admin]\ntoken = \"inline\"\n").unwrap();
        assert_eq!(access.listen, None);
        assert_eq!(
            access.token.map(|(t, from)| (t.expose().to_string(), from)),
            Some(("inline".into(), "admin.token".into()))
        );
        assert!(load("").unwrap().token.is_none());
    }

    #[test]
    fn problems_name_their_key() {
        let key = |text: &str| load(text).unwrap_err().0[0].key.clone();
        assert_eq!(key("[admin]\nlisten = \"nowhere\"\n"), "admin.listen");
        assert_eq!(key("[admin]\ntoken_file = \"/nonexistent/clerkgate-token\"\n"), "admin.token_file");
        assert_eq!(key("[admin]\nlisten = 9901\n"), "admin");
        assert_eq!(key("[admin\n"), "(file)");
    }

    #[test]
    fn state_dir_alone_or_its_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clerkgate.toml");
        std::fs::write(&path, "[server]\nlisten = 42\n[state]\ndir = \"/var/lib/clerkgate\"\n").unwrap();
        assert_eq!(state_dir(&path).unwrap(), PathBuf::from("/var/lib/clerkgate"));
        std::fs::write(&path, "").unwrap();
        assert_eq!(state_dir(&path).unwrap(), PathBuf::from("./clerkgate-state"));
        std::fs::write(&path, "[state]\ndir = 1\n").unwrap();
        assert_eq!(state_dir(&path).unwrap_err().0[0].key, "state");
    }
}
