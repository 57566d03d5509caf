//! Layers point one way. Every top-level module of the library sits in one row of [`LAYERS`]
//! (the picture in `src/lib.rs` and the README's "Layout"), and may name only modules in rows
//! below its own: modules in one row never name each other, so `auth` and `proxy` stay apart.
//!
//! The checker reads every file under `src/` and collects each `crate::<module>` path (in `use`
//! lines, `crate::{a, b}` groups and inline paths), and each `super::` chain that climbs to the
//! crate root (`super::x` in `src/a.rs`, `super::super::x` in `src/a/b.rs`), with its file and
//! line. Comments, string and char literals are blanked first, so prose that mentions a module
//! is not a dependency; unit tests (`tests.rs`, `*_tests.rs`, and `#[cfg(test)]` items) are
//! skipped, since a test may build its fixtures from any layer. `lib.rs` (the module list and
//! its re-exports) and `main.rs` (a separate crate that calls `cli`) are the root, not a layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top to bottom: (name, modules).
const LAYERS: &[(&str, &[&str])] = &[
    ("entry", &["cli"]),
    ("runbook commands", &["ops"]),
    ("fuzz targets", &["fuzzing"]),
    ("development tools", &["devtools"]),
    ("wiring", &["app"]),
    ("edges: data-plane listener, admin API, file watch", &["listener", "admin", "file_watch"]),
    ("TLS termination", &["tls"]),
    ("the one writer", &["control"]),
    ("durable state and audit", &["store"]),
    ("the decision and the hop", &["auth", "proxy"]),
    ("the gateway's own answers", &["answer"]),
    ("what auth and proxy share", &["headers", "reason"]),
    ("what the request path reads", &["keys", "state", "revocation", "webhooks"]),
    ("the Backend API client", &["clerk_api"]),
    ("logging and metrics", &["telemetry"]),
    ("validated configuration", &["config"]),
    ("leaf types the config is made of", &["routes", "mode", "verifying_key"]),
    ("base", &["clock", "fsutil", "proxy_protocol"]),
];

/// One `crate::<module>` reference.
#[derive(Debug, Clone)]
struct Ref {
    from: String,
    to: String,
    file: String,
    line: usize,
    text: String,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → {}  ({}:{}  `{}`)", self.from, self.to, self.file, self.line, self.text)
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("read src/").map(|e| e.expect("dir entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules `src/lib.rs` declares.
fn declared_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("read src/lib.rs");
    let code = blank_comments_and_literals(&lib);
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// The source with comments and the contents of string and char literals replaced by spaces;
/// line breaks are kept, so line numbers still match.
fn blank_comments_and_literals(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && raw_prefix(&b, i) {
            // A raw string: r"…", r#"…"#, br#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            i = j + 1;
            while i < b.len() {
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    out.push('"');
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal such as '\n' or '\u{7f}'.
            out.push_str("'  ");
            i += 3;
            while i < b.len() && b[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            // A plain char literal such as '"'; a lifetime has no closing quote.
            out.push_str("' '");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// True when the `r` at `i` starts a raw string literal (alone, or after a `b`), not an identifier.
fn raw_prefix(b: &[char], i: usize) -> bool {
    let before = |k: usize| i.checked_sub(k).map(|j| b[j]);
    !ident_char(before(1)) || (before(1) == Some('b') && !ident_char(before(2)))
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The code with every `#[cfg(test)]` item (a `mod tests { … }`, a `use`, a `fn`) blanked.
fn blank_test_items(code: &str) -> String {
    let mut b: Vec<char> = code.chars().collect();
    let pattern: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + pattern.len() <= b.len() {
        if b[i..i + pattern.len()] != pattern[..] {
            i += 1;
            continue;
        }
        // From the attribute to the end of the item it marks: the first `;` outside brackets,
        // or the `}` that closes the item's first block.
        let start = i;
        let mut j = i + pattern.len();
        let mut depth = 0i32;
        while j < b.len() {
            match b[j] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => break,
                '{' if depth == 0 => {
                    let mut braces = 0;
                    while j < b.len() {
                        match b[j] {
                            '{' => braces += 1,
                            '}' => {
                                braces -= 1;
                                if braces == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let end = (j + 1).min(b.len());
        for c in &mut b[start..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = j + 1;
    }
    b.into_iter().collect()
}

fn leading_ident(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The modules named by `crate::` paths in `code`, with the byte offset of each.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(pos) = code[from..].find("crate::").map(|p| p + from) {
        from = pos + "crate::".len();
        let before = pos.checked_sub(1).map(|i| bytes[i] as char);
        if ident_char(before) || before == Some('$') {
            continue;
        }
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first segment of each item at the group's own depth.
            let mut depth = 0;
            let mut item_start = 0;
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.extend(leading_ident(&group[item_start..k]).map(|m| (pos, m.to_string())));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.extend(leading_ident(&group[item_start..k]).map(|m| (pos, m.to_string())));
                        item_start = k + 1;
                    }
                    _ => {}
                }
            }
        } else if let Some(m) = leading_ident(rest) {
            found.push((pos, m.to_string()));
        }
    }
    found.retain(|(_, m)| m != "self");
    found
}

/// `code` with every `super::` chain that climbs from a module `depth` levels down to the crate
/// root spelled `crate::`, so [`crate_paths`] sees it. Line breaks are kept.
fn supers_as_crate(code: &str, depth: usize) -> String {
    let chain = "super::".repeat(depth);
    let mut out = String::with_capacity(code.len());
    let mut done = 0;
    while let Some(pos) = code[done..].find(&chain).map(|p| p + done) {
        // Only a chain that starts a path: not the tail of a longer one, not part of a name.
        let before = code[..pos].chars().next_back();
        out.push_str(&code[done..pos]);
        out.push_str(if ident_char(before) || before == Some(':') { &chain } else { "crate::" });
        done = pos + chain.len();
    }
    out.push_str(&code[done..]);
    out
}

/// How deep a file's module is: `src/a.rs` and `src/a/mod.rs` are 1, `src/a/b.rs` is 2.
fn depth(rel: &Path) -> usize {
    let n = rel.components().count();
    if rel.file_name().is_some_and(|f| f == "mod.rs") {
        n - 1
    } else {
        n
    }
}

/// The top-level module a file belongs to, or `None` for the crate root and unit-test files.
fn owner(rel: &Path) -> Option<String> {
    let name = rel.file_name()?.to_str()?;
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return None;
    }
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// Every reference from one top-level module to another.
fn references() -> Vec<Ref> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut refs = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src/").to_path_buf();
        let Some(from) = owner(&rel) else { continue };
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let code = supers_as_crate(&blank_test_items(&blank_comments_and_literals(&text)), depth(&rel));
        let originals: Vec<&str> = text.lines().collect();
        for (offset, to) in crate_paths(&code) {
            let line = code[..offset].matches('\n').count() + 1;
            let repeat = refs
                .last()
                .is_some_and(|r: &Ref| r.to == to && r.line == line && r.file.ends_with(&*rel.to_string_lossy()));
            if to == from || repeat {
                continue;
            }
            refs.push(Ref {
                from: from.clone(),
                to,
                file: format!("src/{}", rel.display()),
                line,
                text: originals.get(line - 1).map_or("", |l| l.trim()).to_string(),
            });
        }
    }
    refs
}

/// The import graph: module → module it names → where.
fn graph(refs: &[Ref]) -> BTreeMap<&str, BTreeMap<&str, Vec<&Ref>>> {
    let mut g: BTreeMap<&str, BTreeMap<&str, Vec<&Ref>>> = BTreeMap::new();
    for r in refs {
        g.entry(&r.from).or_default().entry(&r.to).or_default().push(r);
    }
    g
}

/// The strongly connected components with more than one module (Tarjan): each is a set of
/// modules that reach each other, i.e. one or more import cycles.
fn cycles<'a>(g: &BTreeMap<&'a str, BTreeMap<&'a str, Vec<&Ref>>>) -> Vec<Vec<&'a str>> {
    struct Tarjan<'a, 'g> {
        g: &'g BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'g Ref>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a, '_> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            let succ: Vec<&'a str> = self.g.get(v).map(|m| m.keys().copied().collect()).unwrap_or_default();
            for w in succ {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in g.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// For each edge inside `component`, the shortest cycle through it, each cycle once.
fn shortest_cycles<'a>(
    g: &BTreeMap<&'a str, BTreeMap<&'a str, Vec<&Ref>>>,
    component: &[&'a str],
) -> Vec<Vec<&'a str>> {
    let inside = |m: &str| component.contains(&m);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &a in component {
        for &b in g[a].keys().filter(|b| inside(b)) {
            // Breadth-first from b back to a, inside the component.
            let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([b]);
            while let Some(v) = queue.pop_front() {
                if v == a {
                    break;
                }
                for &w in g.get(v).map(|m| m.keys()).into_iter().flatten() {
                    if inside(w) && w != b && !prev.contains_key(w) {
                        prev.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let mut path = vec![a];
            let mut v = a;
            while v != b {
                let Some(&p) = prev.get(v) else { break };
                path.push(p);
                v = p;
            }
            path.reverse();
            // path runs b … a; the cycle is a → b … → a.
            let mut cycle = vec![a];
            cycle.extend(path);
            let mut key: Vec<&str> = cycle[1..].to_vec();
            key.sort();
            if seen.insert(key) {
                out.push(cycle);
            }
        }
    }
    out.sort_by_key(|c| c.len());
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// The checker finds what it should, on code written for the purpose.
#[test]
fn the_checker_reads_paths_groups_and_skips_comments_strings_and_tests() {
    let src = r##"
        use crate::config::Config;
        use crate::{state::Shared, keys::{KeySet, KeyStore}, self};
        // use crate::commented;
        /* crate::blocked /* nested crate::deeper */ */
        let s = "crate::in_a_string";
        let r = r#"crate::in_a_raw "string""#; let b = br#"crate::bytes"#;
        let c = '"'; let q = '\''; fn f<'a>(x: &'a str) {}
        let n = crate::clock::Clock::system();
        macro_rules! m { () => { $crate::not_ours } }
        #[cfg(test)]
        mod tests { use crate::mint; }
        #[cfg(test)]
        use crate::devtools;
        let after = crate::telemetry::names::X;
    "##;
    let code = blank_test_items(&blank_comments_and_literals(src));
    assert_eq!(code.lines().count(), src.lines().count(), "line numbers are kept");
    let found: Vec<String> = crate_paths(&code).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["config", "state", "keys", "clock", "telemetry"]);

    let climbing = "use super::state::Shared; use super::super::x; use self::super::y; fn f() { super::z(); }";
    let found: Vec<String> = crate_paths(&supers_as_crate(climbing, 1)).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["state", "super", "z"], "one super:: from a top-level file reaches the root");
    let found: Vec<String> = crate_paths(&supers_as_crate(climbing, 2)).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["x"]);
    assert_eq!(
        [Path::new("a.rs"), Path::new("a/mod.rs"), Path::new("a/b.rs"), Path::new("a/b/mod.rs")].map(depth),
        [1, 1, 2, 2]
    );

    let g = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d")];
    let refs: Vec<Ref> = g
        .iter()
        .map(|(f, t)| Ref { from: f.to_string(), to: t.to_string(), file: String::new(), line: 0, text: String::new() })
        .collect();
    assert_eq!(cycles(&graph(&refs)), vec![vec!["a", "b", "c"], vec!["d", "e"]]);
}

/// The table and `src/lib.rs` name the same modules.
#[test]
fn every_module_has_exactly_one_layer() {
    let declared = declared_modules();
    let mut in_table = BTreeSet::new();
    for (_, modules) in LAYERS {
        for m in *modules {
            assert!(in_table.insert(m.to_string()), "{m} is in more than one row of LAYERS");
        }
    }
    let missing: Vec<_> = declared.difference(&in_table).collect();
    let extra: Vec<_> = in_table.difference(&declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "src/lib.rs and LAYERS disagree: modules without a layer {missing:?}; layers naming no module {extra:?}"
    );
}

/// No two top-level modules reach each other through `crate::` paths.
#[test]
fn no_import_cycle_between_modules() {
    let refs = references();
    let g = graph(&refs);
    let found = cycles(&g);
    let mut report = String::new();
    for component in &found {
        report.push_str(&format!("\nmodules that reach each other: {{{}}}\n", component.join(", ")));
        for cycle in shortest_cycles(&g, component) {
            report.push_str(&format!("  cycle: {}\n", cycle.join(" → ")));
        }
        report.push_str("  through:\n");
        for &from in component {
            for (&to, places) in &g[from] {
                if component.contains(&to) {
                    for r in places.iter().take(3) {
                        report.push_str(&format!("    {r}\n"));
                    }
                    if places.len() > 3 {
                        report.push_str(&format!("    … and {} more {from} → {to}\n", places.len() - 3));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "import cycles between top-level modules:{report}");
}

/// Every `crate::` path goes down the table, never up or across a row.
#[test]
fn imports_point_down_the_layers() {
    let mut wrong = Vec::new();
    for r in references() {
        match (layer_of(&r.from), layer_of(&r.to)) {
            (Some(a), Some(b)) if b > a => {}
            (Some(a), Some(b)) => wrong.push(format!(
                "  {r}: \"{}\" may not name \"{}\"{}",
                LAYERS[a].0,
                LAYERS[b].0,
                if a == b { " (same row)" } else { " (a row above)" }
            )),
            _ => wrong.push(format!("  {r}: a module with no row in LAYERS")),
        }
    }
    assert!(wrong.is_empty(), "imports against the layer order (tests/it/layers.rs LAYERS):\n{}", wrong.join("\n"));
}
