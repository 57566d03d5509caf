//! "Did you mean …?" for an unknown key: the nearest key the same section knows (by edit
//! distance, as rustc and cargo suggest), or the same key where it belongs in another section.

use super::raw::KNOWN_KEYS;

/// What to tell the operator about the unknown key `name` in `section` (`""` for the top level,
/// `routes.rule` for any `[[routes.rule]]`): a `did you mean …?` sentence, or `None` when no
/// known key is near.
pub(super) fn did_you_mean(section: &str, name: &str) -> Option<String> {
    let known = |s: &str| KNOWN_KEYS.iter().find(|(k, _)| *k == s).map_or(&[][..], |(_, keys)| *keys);
    let wanted = normalise(name);
    let limit = name.chars().count().max(3) / 3;
    let nearest = known(section)
        .iter()
        .map(|k| (distance(&wanted, &normalise(k)), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    if let Some((_, key)) = nearest {
        return Some(format!("did you mean `{}`?", dotted(section, key)));
    }
    // The right name in the wrong section, e.g. `connect_timeout` under `[server]`.
    KNOWN_KEYS.iter().filter(|(s, _)| *s != section && !s.is_empty()).find_map(|(s, keys)| {
        let key = keys.iter().find(|k| normalise(k) == wanted)?;
        let header = if *s == "routes.rule" { format!("[[{s}]]") } else { format!("[{s}]") };
        Some(format!("did you mean `{}`? It belongs in {header}", dotted(s, key)))
    })
}

fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// Case and `-` versus `_` are never the difference the operator meant.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
/// of two neighbours (`max_stael` is one step from `max_stale`) each cost one.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best =
                (d[(i - 1) * width + j] + 1).min(d[i * width + j - 1] + 1).min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, expected) in [
            ("", "", 0),
            ("abc", "", 3),
            ("listen", "listen", 0),
            ("lisen", "listen", 1),
            ("max_stael", "max_stale", 1),
            ("tokn", "token", 1),
            ("kitten", "sitting", 3),
        ] {
            assert_eq!(distance(a, b), expected, "{a} / {b}");
            assert_eq!(distance(b, a), expected, "{b} / {a}");
        }
    }

    #[test]
    fn suggestions() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("server", "lisen", Some("did you mean `server.listen`?")),
            ("clerk.keys", "max_stael", Some("did you mean `clerk.keys.max_stale`?")),
            ("clerk", "secret_kye", Some("did you mean `clerk.secret_key`?")),
            ("clerk", "jwt-key-file", Some("did you mean `clerk.jwt_key_file`?")),
            ("admin", "tokn", Some("did you mean `admin.token`?")),
            ("", "sever", Some("did you mean `server`?")),
            ("routes.rule", "methds", Some("did you mean `routes.rule.methods`?")),
            ("server", "connect_timeout", Some("did you mean `upstream.connect_timeout`? It belongs in [upstream]")),
            ("", "colour", None),
            ("upstream", "timeout", None),
            ("unknown.section", "x", None),
        ];
        for (section, name, expected) in cases {
            assert_eq!(did_you_mean(section, name).as_deref(), *expected, "{section} / {name}");
        }
    }
}
