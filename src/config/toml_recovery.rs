//! Reading the file into the raw mirror without stopping at the first wrongly typed value:
//! each one is reported under its dotted key, its line taken out, and parsing goes on. A syntax
//! error names its line and column and shows the line with a caret, as cargo and rustc do.

use super::raw::RawConfig;
use super::{ConfigErrors, ConfigProblem};

/// Parses the file into the raw mirror. A syntax error ends it there (`(file)`); a value of the
/// wrong type is reported under its dotted key, taken out, and parsing goes on, so one wrongly
/// typed value never hides the file's other problems.
pub(super) fn parse_raw(text: &str) -> Result<(RawConfig, Vec<ConfigProblem>), ConfigErrors> {
    if let Err(e) = text.parse::<toml::Table>() {
        let message = match e.span() {
            Some(span) => {
                let at = Position::of(text, span.start);
                format!(
                    "not valid TOML at line {}, column {}: {}\n{}",
                    at.line,
                    at.column,
                    e.message().trim(),
                    at.snippet(text, span.end)
                )
            }
            None => format!("not valid TOML: {}", e.message().trim()),
        };
        return Err(ConfigErrors(vec![ConfigProblem { key: "(file)".into(), message }]));
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
        let line = Position::of(&text, span.start).line;
        problems.push(ConfigProblem {
            key: serde_key(&e).unwrap_or_else(|| key_at(&text, line_start)),
            message: format!("line {line}: {}", e.message().trim()),
        });
        // Blank the value's lines rather than remove them, so later lines keep their numbers.
        let newlines = "\n".repeat(text[line_start..line_end].matches('\n').count());
        text.replace_range(line_start..line_end, &newlines);
    }
    problems.push(ConfigProblem { key: "(file)".into(), message: "not a clerkgate config".into() });
    Err(ConfigErrors(problems))
}

/// The dotted key serde was reading when it failed: the error's plain form (without the
/// input) ends with ``in `clerk.keys.max_stale` ``. Right even for a value spread over lines.
fn serde_key(e: &toml::de::Error) -> Option<String> {
    let mut plain = e.clone();
    plain.set_input(None);
    let text = plain.to_string();
    let key = text.lines().rev().find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))?;
    Some(key.to_string())
}

/// The dotted key of the `key = value` line starting at `line_start`, with its table header
/// (when the error does not say).
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

/// A place in the text, 1-based, the column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    line: usize,
    column: usize,
    /// Byte offsets of the line's start and of the place itself.
    line_start: usize,
    offset: usize,
}

impl Position {
    /// The position of byte `offset` (clamped to the text, and back to a character boundary).
    fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            line_start,
            offset,
        }
    }

    /// The line with a caret under the place (as long as the span, within the line), indented
    /// to sit under a `key: message` line:
    ///
    /// ```text
    ///       |
    ///     3 | max_stale = 1.2.3
    ///       |             ^^^^^
    /// ```
    fn snippet(&self, text: &str, span_end: usize) -> String {
        let line = text[self.line_start..].split('\n').next().unwrap_or_default().trim_end_matches('\r');
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        // Tabs stay tabs under the caret, so it lines up whatever the tab width.
        let pad: String =
            text[self.line_start..self.offset].chars().map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        let rest = line.len().saturating_sub(self.offset - self.line_start);
        let width = span_end.saturating_sub(self.offset).min(rest);
        let width = text.get(self.offset..self.offset + width).map_or(0, |s| s.chars().count()).max(1);
        format!("    {gutter} |\n    {number} | {line}\n    {gutter} | {pad}{}", "^".repeat(width))
    }
}
