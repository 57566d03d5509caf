//! Where a value came from: the environment, a `*_file` key, or the key itself. A problem with
//! the value is reported under the name the operator actually set — the variable, the
//! `*_file` key with its path, or the key — never under a neighbour it merely stands in for.

/// The origin of one value, for the problems and warnings about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// An environment variable, which wins over the config key `key`.
    Env {
        /// The variable, e.g. `CLERK_JWT_KEY`.
        var: &'static str,
        /// The config key it overrides, e.g. `clerk.jwt_key`.
        key: &'static str,
    },
    /// A `*_file` key naming the file the value was read from.
    File {
        /// The `*_file` key, e.g. `clerk.jwt_key_file`.
        key: String,
        /// The file, as written in the config.
        path: String,
    },
    /// The key itself, in the config file.
    Inline {
        /// The key, e.g. `clerk.jwt_key`.
        key: &'static str,
    },
}

impl Source {
    /// The name a problem with the value is listed under.
    pub(crate) fn key(&self) -> &str {
        match self {
            Source::Env { var, .. } => var,
            Source::File { key, .. } => key,
            Source::Inline { key } => key,
        }
    }

    /// `what` (a sentence about the value) with where the value came from, so the operator
    /// knows which of the three places to fix.
    pub(crate) fn explain(&self, what: impl std::fmt::Display) -> String {
        match self {
            Source::Env { key, .. } => format!("{what} (set in the environment, which wins over {key})"),
            Source::File { path, .. } => format!("{path}: {what}"),
            Source::Inline { .. } => what.to_string(),
        }
    }

    /// The variable, when the value came from the environment (for `check-config`'s comments).
    pub(crate) fn env_var(&self) -> Option<&'static str> {
        match self {
            Source::Env { var, .. } => Some(var),
            _ => None,
        }
    }
}
