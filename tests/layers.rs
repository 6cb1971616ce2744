//! Keeps `src/` in the one-way order of its layers (`docs/ARCHITECTURE.md`,
//! "Layers").
//!
//! It reads every file under `src/` as text, drops comments, string literals
//! and `#[cfg(test)]` items, collects the `crate::…` paths that remain, maps
//! each file to its top-level module and checks the graph of top-level
//! modules: every module has a layer, no edge goes to a higher layer, no
//! "never" edge is present, and there is no cycle. A failure names the edge
//! and the file it is in.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its layer. A module may use only
/// modules of its own layer or a lower one.
const LAYERS: &[(&str, u8)] = &[
    // 0 model: plain types and small primitives, no I/O, no config
    ("model", 0),
    ("reply", 0),
    ("alarm", 0),
    ("lifecycle", 0),
    ("conn_info", 0),
    ("loops", 0),
    ("real_ip", 0),
    ("proxy_protocol", 0),
    // 1 config: YAML to typed, validated data
    ("config", 1),
    // 2 policy: fan-out, who may do what, counters
    ("hub", 2),
    ("auth", 2),
    ("limits", 2),
    ("rules", 2),
    ("metrics", 2),
    ("tls", 2),
    ("connections", 2),
    // 3 broker: ids, history, cross-node fan-in
    ("broker", 3),
    // 4 backend side: everything that talks to the application
    ("upstream", 4),
    ("proxy", 4),
    ("ingest", 4),
    ("session_auth", 4),
    ("pusher", 4),
    // 5 state: the bag of handles; reload swaps policy
    ("state", 5),
    ("reload", 5),
    // 6 handlers: one request or connection at a time
    ("transport", 6),
    ("admin", 6),
    ("router", 6),
    // 7 server: listeners, engines, shutdown
    ("server", 7),
    // 8 entry: setup, CLI, tools
    ("lib", 8),
    ("main", 8),
    ("logging", 8),
    ("bench", 8),
    ("demo", 8),
    ("fuzzing", 8),
];

/// Edges ruled out whatever the layers say (`docs/ARCHITECTURE.md`).
const NEVER: &[(&str, &str, &str)] = &[
    ("hub", "broker", "the hub knows no broker"),
    ("hub", "transport", "the hub knows no transport"),
    ("broker", "transport", "a broker knows no transport"),
    ("ingest", "transport", "ingest never writes to clients"),
    (
        "transport",
        "proxy",
        "transports use upstream/, not the proxy",
    ),
];

/// Modules `state` may be imported by (besides itself): the handlers, the
/// server and the entry layer.
const STATE_USERS: u8 = 5;

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

#[test]
fn modules_keep_their_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = module_edges(&src);
    let problems = check(&edges);
    assert!(
        problems.is_empty(),
        "src/ breaks its layers (docs/ARCHITECTURE.md \"Layers\"):\n{}",
        problems.join("\n")
    );
}

/// The checker itself fails on a graph that breaks each rule.
#[test]
fn the_checker_sees_each_kind_of_break() {
    let mut edges = Edges::new();
    let mut add = |from: &str, to: &str| {
        edges
            .entry((from.to_owned(), to.to_owned()))
            .or_default()
            .insert(format!("src/{from}.rs"));
    };
    add("config", "hub"); // upward
    add("hub", "broker"); // upward and never
    add("auth", "rules"); // same layer, one half of a cycle
    add("rules", "auth"); // the other half
    add("proxy", "state"); // state imported below the handlers
    add("widget", "reply"); // no layer
    let problems = check(&edges).join("\n");
    for expected in [
        "config -> hub",
        "hub -> broker",
        "the hub knows no broker",
        "cycle",
        "proxy -> state",
        "widget",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    let mut clean = Edges::new();
    clean
        .entry(("transport".into(), "hub".into()))
        .or_default()
        .insert("src/transport.rs".into());
    assert!(check(&clean).is_empty());
}

/// (from, to) -> the files where `from` names `to`.
type Edges = BTreeMap<(String, String), BTreeSet<String>>;

fn check(edges: &Edges) -> Vec<String> {
    let mut problems = Vec::new();
    let where_ = |files: &BTreeSet<String>| files.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut modules = BTreeSet::new();
    for (from, to) in edges.keys() {
        modules.insert(from.clone());
        modules.insert(to.clone());
    }
    for m in &modules {
        if layer(m).is_none() {
            problems.push(format!(
                "module `{m}` has no layer: add it to LAYERS in tests/layers.rs and to the table in docs/ARCHITECTURE.md"
            ));
        }
    }
    for ((from, to), files) in edges {
        let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
            continue;
        };
        if lt > lf {
            problems.push(format!(
                "upward edge {from} -> {to} (layer {lf} -> {lt}) in {}",
                where_(files)
            ));
        }
        if let Some((_, _, why)) = NEVER.iter().find(|(f, t, _)| f == from && t == to) {
            problems.push(format!(
                "never edge {from} -> {to} ({why}) in {}",
                where_(files)
            ));
        }
        if to == "state" && lf < STATE_USERS {
            problems.push(format!(
                "edge {from} -> state: state is imported only by handlers and the server, in {}",
                where_(files)
            ));
        }
    }
    for members in find_cycles(edges) {
        problems.push(format!(
            "cycle among top-level modules {{{}}}: each reaches every other",
            members.join(", ")
        ));
    }
    problems.sort();
    problems.dedup();
    problems
}

/// The sets of modules that reach each other (strongly connected, more
/// than one module), each written as a path through all of them.
fn find_cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().insert(to);
    }
    let reach = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(m) = todo.pop() {
            for &n in next.get(m).into_iter().flatten() {
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|&m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for (&m, from_m) in &reached {
        if done.contains(m) || !from_m.contains(m) {
            continue;
        }
        let members: Vec<String> = from_m
            .iter()
            .filter(|&&n| reached.get(n).is_some_and(|r| r.contains(m)))
            .map(|n| n.to_string())
            .collect();
        done.extend(members.iter().cloned());
        cycles.push(members);
    }
    cycles
}

fn module_edges(src: &Path) -> Edges {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    files.sort();
    let texts: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|f| (f.clone(), fs::read_to_string(f).unwrap_or_default()))
        .collect();
    // Files that only exist for tests: `#[cfg(test)] mod name;` declarations.
    let mut test_only: Vec<PathBuf> = Vec::new();
    for (file, text) in &texts {
        let code = strip_comments_and_strings(text);
        for name in cfg_test_mod_decls(&code) {
            let dir = module_dir(file);
            test_only.push(dir.join(format!("{name}.rs")));
            test_only.push(dir.join(&name));
        }
    }
    let mut edges = Edges::new();
    for (file, text) in &texts {
        if test_only.iter().any(|t| file.starts_with(t)) {
            continue;
        }
        let rel = file.strip_prefix(src).unwrap_or(file);
        let from = top_module(rel);
        let code = drop_cfg_test_items(&strip_comments_and_strings(text));
        let top_level_file = rel.components().count() == 1;
        for to in crate_paths(&code, top_level_file) {
            if to != from && to != "self" && to != "super" {
                edges
                    .entry((from.clone(), to))
                    .or_default()
                    .insert(format!("src/{}", rel.display()));
            }
        }
    }
    edges
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The directory a file's child modules live in: `src/a.rs` -> `src/a/`,
/// `src/a/mod.rs` -> `src/a/`, `src/lib.rs` -> `src/`.
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new(""));
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod") | Some("lib") | Some("main") => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
        None => parent.to_path_buf(),
    }
}

fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("");
    first.trim_end_matches(".rs").to_owned()
}

/// Replaces comments with spaces and empties string and char literals, so
/// that `crate::` in a doc comment or a message is not read as a path.
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // raw string r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // a char literal ('x', '\n', '\u{..}') or a lifetime ('a)
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                // a multi-byte char literal or a lifetime
                let rest = &text[i + 1..];
                let mut chars = rest.char_indices();
                if let (Some((_, ch)), Some((n, '\''))) = (chars.next(), chars.next()) {
                    if !ch.is_ascii() {
                        i += 1 + n + 1;
                        out.push_str("' '");
                        continue;
                    }
                }
                out.push('\'');
                i += 1;
            }
        } else {
            let len = utf8_len(c);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Names in `#[cfg(test)] mod name;` (a test-only child file).
fn cfg_test_mod_decls(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let after = after
            .strip_prefix("pub(crate)")
            .unwrap_or(after)
            .trim_start();
        if let Some(decl) = after.strip_prefix("mod ") {
            let name: String = decl
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let tail = decl.trim_start()[name.len()..].trim_start();
            if tail.starts_with(';') {
                names.push(name);
            }
        }
        rest = &rest[at + 1..];
    }
    names
}

/// Removes each item that follows `#[cfg(test)]`: up to its `;`, or through
/// its braced body, whichever comes first.
fn drop_cfg_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let b = item.as_bytes();
        let mut i = 0;
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b';' if depth == 0 => {
                    i += 1;
                    break;
                }
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        rest = &item[i.min(item.len())..];
    }
    out.push_str(rest);
    out
}

/// The top-level modules named by `crate::…` paths (and, in a file directly
/// under `src/`, by `super::…`, which is the crate root there).
fn crate_paths(code: &str, top_level_file: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let b = code.as_bytes();
    let mut prefixes = vec!["crate::"];
    if top_level_file {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        let mut from = 0;
        while let Some(pos) = code[from..].find(prefix) {
            let at = from + pos;
            from = at + prefix.len();
            if at > 0 && (is_ident(b[at - 1]) || b[at - 1] == b'$') {
                continue;
            }
            let rest = code[from..].trim_start();
            if let Some(group) = rest.strip_prefix('{') {
                for name in group_heads(group) {
                    found.insert(name);
                }
            } else {
                let name = ident_at(rest);
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// The first identifier of each element of a `{a, b::c, d::{e}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && (c.is_alphanumeric() || c == '_') => {
                heads.push(ident_at(&group[i..]));
                start = false;
            }
            _ => {}
        }
    }
    heads.retain(|h| h != "self");
    heads
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}
