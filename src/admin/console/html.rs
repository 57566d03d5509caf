//! HTML built by appending: markup only from `&'static str` (text written in this crate), every
//! other value through [`Html::text`], which escapes it. A value from the state, the audit log
//! or the request therefore cannot become markup, whatever it holds: the type does not let it.

use std::fmt::{Display, Write as _};

/// An HTML document or fragment under construction.
#[derive(Debug, Default)]
pub(super) struct Html(String);

impl Html {
    /// An empty fragment.
    pub(super) fn new() -> Self {
        Html(String::with_capacity(16 * 1024))
    }

    /// Markup written in this crate (tags, attribute names, constant text).
    pub(super) fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// A value, escaped for text and for a double- or single-quoted attribute alike.
    pub(super) fn text(&mut self, value: impl Display) -> &mut Self {
        let mut plain = String::new();
        let _ = write!(plain, "{value}");
        escape_into(&mut self.0, &plain);
        self
    }

    /// Another fragment built the same way.
    pub(super) fn append(&mut self, other: Html) -> &mut Self {
        self.0.push_str(&other.0);
        self
    }

    /// The finished text.
    pub(super) fn into_string(self) -> String {
        self.0
    }
}

/// `text` with the five characters that can end a text node or a quoted attribute value
/// escaped (the development Frontend API stand-in's pages use it too).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Escapes the five characters that can end a text node or a quoted attribute value.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_text_and_attributes() {
        let cases = [
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("\" onmouseover=\"x", "&quot; onmouseover=&quot;x"),
            ("' autofocus '", "&#39; autofocus &#39;"),
            ("a & b", "a &amp; b"),
            ("plain ünïcode", "plain ünïcode"),
        ];
        for (value, expected) in cases {
            let mut h = Html::new();
            h.raw("<p title=\"").text(value).raw("\">").text(value).raw("</p>");
            assert_eq!(h.into_string(), format!("<p title=\"{expected}\">{expected}</p>"), "{value}");
        }
    }
}
