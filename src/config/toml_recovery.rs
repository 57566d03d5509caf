//! Reading the file into the raw mirror without stopping at the first wrongly typed value:
//! each one is reported under its dotted key, its line taken out, and parsing goes on.

use super::raw::RawConfig;
use super::{ConfigErrors, ConfigProblem};

/// Parses the file into the raw mirror. A syntax error ends it there (`(file)`); a value of the
/// wrong type is reported under its dotted key, taken out, and parsing goes on, so one wrongly
/// typed value never hides the file's other problems.
pub(super) fn parse_raw(text: &str) -> Result<(RawConfig, Vec<ConfigProblem>), ConfigErrors> {
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(ConfigErrors(vec![ConfigProblem {
            key: "(file)".into(),
            message: format!("not valid TOML: {}", e.message().trim()),
        }]));
    }
    let mut text = text.to_string();
    let mut problems = Vec::new();
    for _ in 0..64 {
        let e = match toml::from_str::<RawConfig>(&text) {
            Ok(raw) => return Ok((raw, problems)),
            Err(e) => e,
        };
        let Some(span) = e.span().filter(|s| s.start < text.len()) else { break };
        let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[span.end.min(text.len())..].find('\n').map_or(text.len(), |i| span.end + i);
        problems.push(ConfigProblem { key: key_at(&text, line_start), message: e.message().trim().to_string() });
        text.replace_range(line_start..line_end, "");
    }
    problems.push(ConfigProblem { key: "(file)".into(), message: "not a clerkgate config".into() });
    Err(ConfigErrors(problems))
}

/// The dotted key of the `key = value` line starting at `line_start`, with its table header.
fn key_at(text: &str, line_start: usize) -> String {
    let line = &text[line_start..];
    let key = line.split('=').next().unwrap_or_default().trim().trim_matches('"').to_string();
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match section {
        Some(s) if !key.starts_with('[') => format!("{s}.{key}"),
        _ => key,
    }
}
