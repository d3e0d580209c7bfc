//! The import graph of a crate's modules, read from its source, and the cycles in it.
//!
//! A module's file names the modules it needs by path: `use crate::engine::host::Host;`,
//! `use super::limits::{self, Share}`, or inline, `crate::tasks::for_each_on_hosts(..)`.
//! Each such path is resolved to the file that defines what it names: the deepest module
//! along the path, then through a `pub use` that re-exports the item from a submodule.
//! Code inside a `#[cfg(test)] mod tests { .. }` block is left out: tests may reach
//! anywhere.
//!
//! A cycle is judged the way a reader sees the tree, one folder at a time. Inside a
//! module `D`, its direct children (files, and folders taken whole) are the nodes, and
//! `A -> B` when any file in `A` uses anything in `B`. `D`'s own file (`mod.rs`,
//! `lib.rs`) is `D` itself: its ties to its children are the folder's facade and are not
//! edges. Every cycle between files shows up at some folder: at the deepest one that
//! holds two of its files in different children. So a crate without cycles at every
//! folder is one whose rooms can be read from the bottom up.
//!
//! This reads text, not the compiler's resolution: a macro that builds paths, or a
//! glob import, can hide an edge. It is a check against drift, not a proof.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path from the crate root: `[]` is the root, `["engine", "host"]` is
/// `crate::engine::host`.
pub type ModPath = Vec<String>;

/// One module's file and what its code names.
#[derive(Debug, Clone)]
struct Module {
    /// The module's source with comments and test modules removed.
    code: String,
    /// Items re-exported by `pub use child::...::Name`: name → the path it comes from.
    reexports: BTreeMap<String, ModPath>,
}

/// A use of one module by another, with the path that made it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: ModPath,
    pub to: ModPath,
    pub via: String,
}

/// A cycle among the children of one folder, with the uses that close it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The folder the cycle is inside (`[]`: the crate root).
    pub inside: ModPath,
    /// Its children on the cycle, in order (the first follows the last).
    pub members: Vec<String>,
    /// Every child that can reach every other one of them: breaking this cycle may show
    /// another among them.
    pub tangled: Vec<String>,
    /// For each step `members[i] -> members[i+1]`, one use that makes it.
    pub uses: Vec<Edge>,
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inside = if self.inside.is_empty() {
            "crate".to_owned()
        } else {
            format!("crate::{}", self.inside.join("::"))
        };
        writeln!(
            f,
            "a cycle inside {inside}: {} -> {}",
            self.members.join(" -> "),
            self.members[0]
        )?;
        if self.tangled.len() > self.members.len() {
            writeln!(f, "  (tangled with it: {})", self.tangled.join(", "))?;
        }
        for e in &self.uses {
            writeln!(f, "  {} uses {}", show(&e.from), e.via)?;
        }
        Ok(())
    }
}

fn show(p: &ModPath) -> String {
    if p.is_empty() {
        "crate".to_owned()
    } else {
        format!("crate::{}", p.join("::"))
    }
}

/// The import graph of the crate whose `src` directory is `src`.
pub struct Graph {
    edges: BTreeSet<Edge>,
    modules: BTreeSet<ModPath>,
}

impl Graph {
    /// Reads every `.rs` file under `src` (a crate's `src`, holding `lib.rs`).
    pub fn of_crate(src: &Path) -> std::io::Result<Graph> {
        let mut files = Vec::new();
        walk(src, &mut files)?;
        let mut sources = BTreeMap::new();
        for file in files {
            let Some(path) = module_path(src, &file) else {
                continue;
            };
            let text = std::fs::read_to_string(&file)?;
            sources.insert(path, text);
        }
        Ok(Graph::from_sources(sources))
    }

    fn from_sources(sources: BTreeMap<ModPath, String>) -> Graph {
        let modules: BTreeMap<ModPath, Module> = sources
            .into_iter()
            .map(|(path, text)| {
                let code = without_tests(&without_comments(&text));
                let mut m = Module {
                    code,
                    reexports: BTreeMap::new(),
                };
                m.reexports = reexports_of(&path, &m.code);
                (path, m)
            })
            .collect();
        let known: BTreeSet<ModPath> = modules.keys().cloned().collect();
        let mut edges = BTreeSet::new();
        for (from, m) in &modules {
            for (via, absolute) in paths_named(from, &m.code, &known) {
                let to = resolve(&absolute, &modules);
                if &to != from {
                    edges.insert(Edge {
                        from: from.clone(),
                        to,
                        via,
                    });
                }
            }
        }
        Graph {
            edges,
            modules: known,
        }
    }

    /// Every use of one module by another.
    pub fn edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges.iter()
    }

    /// Every cycle, at most one per strongly connected group in each folder.
    pub fn cycles(&self) -> Vec<Cycle> {
        let folders: BTreeSet<ModPath> = self
            .modules
            .iter()
            .filter(|m| {
                self.modules
                    .iter()
                    .any(|c| c.len() == m.len() + 1 && c.starts_with(m))
            })
            .cloned()
            .collect();
        let mut found = Vec::new();
        for folder in folders {
            // child name -> child name -> one edge making it
            let mut graph: BTreeMap<String, BTreeMap<String, Edge>> = BTreeMap::new();
            for e in &self.edges {
                let (Some(a), Some(b)) = (child_of(&folder, &e.from), child_of(&folder, &e.to))
                else {
                    continue;
                };
                if a != b {
                    graph
                        .entry(a)
                        .or_default()
                        .entry(b)
                        .or_insert_with(|| e.clone());
                }
            }
            for group in strongly_connected(&graph) {
                let members = cycle_through(&graph, &group);
                let uses = members
                    .iter()
                    .enumerate()
                    .map(|(i, a)| graph[a][&members[(i + 1) % members.len()]].clone())
                    .collect();
                found.push(Cycle {
                    inside: folder.clone(),
                    members,
                    tangled: group.into_iter().collect(),
                    uses,
                });
            }
        }
        found
    }
}

/// Which child of `folder` holds module `m` (None: `m` is not inside it, or is it).
fn child_of(folder: &ModPath, m: &ModPath) -> Option<String> {
    (m.len() > folder.len() && m.starts_with(folder)).then(|| m[folder.len()].clone())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// `src/lib.rs` → `[]`, `src/a/mod.rs` and `src/a.rs` → `[a]`, `src/a/b.rs` → `[a, b]`.
/// Binaries (`main.rs`, `bin/`) are not modules of the library.
fn module_path(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    match last.as_str() {
        "lib.rs" if parts.is_empty() => {}
        "main.rs" if parts.is_empty() => return None,
        "mod.rs" => {}
        other => parts.push(other.strip_suffix(".rs")?.to_owned()),
    }
    Some(parts)
}

/// The text with `//` comments (and so doc comments), `/* */` comments and the text of
/// string literals removed (a `"//"` in a string is not a comment, nor a path in it a
/// use).
fn without_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            // A string's text is left out: it names no module.
            if c == b'\\' && i + 1 < b.len() {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
                out.push('"');
            }
            i += 1;
            continue;
        }
        if c == b'r' && (i == 0 || !is_ident_char(b[i - 1] as char)) {
            // A raw string, r"..." or r#"..."#: skipped to its own closing.
            let hashes = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
            if b.get(i + 1 + hashes) == Some(&b'"') {
                let close = format!("\"{}", "#".repeat(hashes));
                let body = i + 2 + hashes;
                let end = text[body..]
                    .find(&close)
                    .map_or(b.len(), |k| body + k + close.len());
                out.push_str("\"\"");
                i = end;
                continue;
            }
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == b'"' {
            in_str = true;
        } else if c == b'\'' {
            // A char literal such as '"' or '{': copy it whole so it opens nothing.
            if let Some(len) = char_literal_len(&text[i..]) {
                out.push_str(&text[i..i + len]);
                i += len;
                continue;
            }
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The length of a char literal at the start of `s` ('x', '\n', '\''), or None for a
/// lifetime.
fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        let rest = &s[2..];
        return rest.find('\'').map(|end| end + 3);
    }
    let (j, close) = chars.next()?;
    (close == '\'').then_some(j + 1)
}

/// The code with every `#[cfg(test)]` item that is a braced module removed.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let open = trimmed.find('{');
        let semi = trimmed.find(';');
        match (is_mod, open) {
            (true, Some(open)) if semi.is_none_or(|s| s > open) => {
                out.push_str(&rest[..at]);
                let body_start = rest.len() - trimmed.len() + open;
                let mut depth = 0usize;
                let mut end = rest.len();
                for (k, ch) in rest[body_start..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                end = body_start + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &rest[end..];
            }
            _ => {
                out.push_str(&rest[..at + "#[cfg(test)]".len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path the code names that starts at `crate`, `super` or `self`, or at a child
/// module of `here`, made absolute. `use` trees are expanded: `use crate::a::{b, c::D}`
/// names `crate::a::b` and `crate::a::c::D`.
fn paths_named(here: &ModPath, code: &str, known: &BTreeSet<ModPath>) -> Vec<(String, ModPath)> {
    let mut out = Vec::new();
    // use statements first (their trees), then inline paths elsewhere.
    let mut rest_code = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        rest_code.push_str(&rest[..at]);
        let body = &rest[at..];
        let start = body.find("use ").map(|k| k + 4).unwrap_or(0);
        let end = body.find(';').unwrap_or(body.len());
        for p in expand_tree(&compact(&body[start..end])) {
            if let Some(abs) = absolute(here, &p, known) {
                out.push((format!("use {}", p.join("::")), abs));
            }
        }
        rest = &body[(end + 1).min(body.len())..];
    }
    rest_code.push_str(rest);
    let chars: Vec<char> = rest_code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident_char(chars[i])
            || (i > 0 && (is_ident_char(chars[i - 1]) || chars[i - 1] == ':'))
        {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            segs.push(chars[s..j].iter().collect::<String>());
            if j + 2 < chars.len()
                && chars[j] == ':'
                && chars[j + 1] == ':'
                && is_ident_char(chars[j + 2])
            {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            if let Some(abs) = absolute(here, &segs, known) {
                out.push((segs.join("::"), abs));
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// The offset of the next `use` item (`use`, `pub use`, `pub(crate) use`) at a word
/// boundary.
fn find_use(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = code[from..].find("use ") {
        let at = from + k;
        let before = code[..at].chars().next_back();
        if before.is_none_or(|c| !is_ident_char(c) && c != ':') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// A use tree without its whitespace and its renames: `a::{b as c, d}` → `a::{b,d}`.
fn compact(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    let mut k = 0;
    while k < words.len() {
        if words[k] == "as" {
            // Skip the new name, keeping what follows it (`,` or `}`).
            let renamed = words.get(k + 1).copied().unwrap_or("");
            out.push_str(renamed.trim_start_matches(is_ident_char));
            k += 2;
            continue;
        }
        out.push_str(words[k]);
        k += 1;
    }
    out
}

/// `a::{b,c::{d,self}}` → `[a,b]`, `[a,c,d]`, `[a,c]`. `as` renames are dropped.
fn expand_tree(tree: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    expand_into(&[], tree, &mut out);
    out
}

fn expand_into(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::");
        let mut base = prefix.to_vec();
        base.extend(
            head.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        let inner = tree[open + 1..]
            .strip_suffix('}')
            .unwrap_or(&tree[open + 1..]);
        for part in split_top(inner) {
            if part == "self" {
                out.push(base.clone());
            } else if !part.is_empty() {
                expand_into(&base, part, out);
            }
        }
    } else {
        let mut p = prefix.to_vec();
        let segs: Vec<&str> = tree.split("::").filter(|s| !s.is_empty()).collect();
        for s in segs {
            if s == "self" {
                continue;
            }
            if s == "*" {
                break;
            }
            p.push(s.to_owned());
        }
        out.push(p);
    }
}

/// Splits `a,b::{c,d},e` at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `segs` from module `here`, made absolute, if it starts in this crate.
fn absolute(here: &ModPath, segs: &[String], known: &BTreeSet<ModPath>) -> Option<ModPath> {
    let first = segs.first()?;
    let (mut base, rest) = match first.as_str() {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (here.clone(), &segs[1..]),
        "super" => {
            let ups = segs.iter().take_while(|s| *s == "super").count();
            let keep = here.len().checked_sub(ups)?;
            (here[..keep].to_vec(), &segs[ups..])
        }
        // A child module of here, named without `self::` (2018 paths); anything else
        // (a crate, a local name) is not this crate's.
        _ => {
            let mut child = here.clone();
            child.push(first.clone());
            if !known.contains(&child) {
                return None;
            }
            (child, &segs[1..])
        }
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The module that defines what absolute path `p` names: the deepest module along it,
/// then through that module's re-exports.
fn resolve(p: &ModPath, modules: &BTreeMap<ModPath, Module>) -> ModPath {
    let mut m: ModPath = Vec::new();
    for (k, seg) in p.iter().enumerate() {
        let mut next = m.clone();
        next.push(seg.clone());
        if modules.contains_key(&next) {
            m = next;
            continue;
        }
        // `seg` is an item of `m`: follow a re-export of it, once per level.
        if let Some(from) = modules.get(&m).and_then(|md| md.reexports.get(seg)) {
            let mut target = from.clone();
            target.extend(p[k + 1..].iter().cloned());
            if target != *p {
                return resolve(&target, modules);
            }
        }
        break;
    }
    m
}

/// `pub use` items of module `here` that name one of its descendants: the name they
/// give → the absolute path of what they re-export.
fn reexports_of(here: &ModPath, code: &str) -> BTreeMap<String, ModPath> {
    let mut out = BTreeMap::new();
    let mut rest = code;
    while let Some(at) = rest.find("pub use ") {
        let body = &rest[at + "pub use ".len()..];
        let end = body.find(';').unwrap_or(body.len());
        for p in expand_tree(&compact(&body[..end])) {
            let Some(name) = p.last() else { continue };
            let abs = match p[0].as_str() {
                "crate" => p[1..].to_vec(),
                "self" => here.iter().chain(&p[1..]).cloned().collect(),
                "super" => continue,
                _ => here.iter().chain(&p).cloned().collect(),
            };
            if abs.len() > here.len() + 1 && abs.starts_with(here) {
                out.insert(name.clone(), abs);
            }
        }
        rest = &body[end.min(body.len())..];
    }
    out
}

/// Strongly connected groups of two or more nodes (Tarjan).
fn strongly_connected<V>(graph: &BTreeMap<String, BTreeMap<String, V>>) -> Vec<BTreeSet<String>> {
    struct T<'a, V> {
        g: &'a BTreeMap<String, BTreeMap<String, V>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a, V>(t: &mut T<'a, V>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(outs) = t.g.get(v) {
            for w in outs.keys() {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let l = t.low[w].min(t.low[v]);
                    t.low.insert(v, l);
                } else if t.on.contains(w) {
                    let l = t.index[w].min(t.low[v]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = BTreeSet::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                group.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// One simple cycle inside a strongly connected group: from its first member, the
/// shortest way back to it.
fn cycle_through<V>(
    graph: &BTreeMap<String, BTreeMap<String, V>>,
    group: &BTreeSet<String>,
) -> Vec<String> {
    let start = group.iter().next().expect("a group has members").clone();
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(&v).into_iter().flat_map(|o| o.keys()) {
            if !group.contains(w) {
                continue;
            }
            if *w == start {
                let mut path = vec![v.clone()];
                let mut at = v.clone();
                while at != start {
                    at = prev[&at].clone();
                    path.push(at.clone());
                }
                path.reverse();
                return path;
            }
            if !prev.contains_key(w) {
                prev.insert(w.clone(), v.clone());
                queue.push_back(w.clone());
            }
        }
    }
    group.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let sources = files
            .iter()
            .map(|(path, text)| {
                let p = module_path(Path::new("src"), Path::new(&format!("src/{path}"))).unwrap();
                (p, text.to_string())
            })
            .collect();
        Graph::from_sources(sources)
    }

    fn v(s: &str) -> ModPath {
        s.split("::")
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn module_paths_follow_the_files() {
        let src = Path::new("src");
        assert_eq!(module_path(src, Path::new("src/lib.rs")), Some(v("")));
        assert_eq!(module_path(src, Path::new("src/a/mod.rs")), Some(v("a")));
        assert_eq!(module_path(src, Path::new("src/a/b.rs")), Some(v("a::b")));
        assert_eq!(module_path(src, Path::new("src/main.rs")), None);
        assert_eq!(module_path(src, Path::new("src/bin/x.rs")), None);
    }

    #[test]
    fn use_trees_expand_to_every_path() {
        assert_eq!(
            expand_tree(&compact("crate::a::{b, c::{d, self}, e as f}")),
            vec![
                v("crate::a::b"),
                v("crate::a::c::d"),
                v("crate::a::c"),
                v("crate::a::e")
            ]
        );
        assert_eq!(expand_tree("super::x::*"), vec![v("super::x")]);
    }

    #[test]
    fn comments_strings_and_test_modules_name_nothing() {
        let g = graph(&[
            ("lib.rs", "pub mod a; pub mod b;"),
            (
                "a.rs",
                "//! see [`crate::b::X`]\nfn f() { let s = \"crate::b::X // no\"; let c = '\"'; }\n\
                 #[cfg(test)]\nmod tests { use crate::b::X; }",
            ),
            ("b.rs", "pub struct X;"),
        ]);
        assert_eq!(g.edges().count(), 0, "{:?}", g.edges().collect::<Vec<_>>());
    }

    #[test]
    fn a_cycle_between_two_files_is_found_with_the_uses_that_make_it() {
        let g = graph(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
            ("a.rs", "use crate::b::X; pub fn f() {}"),
            ("b.rs", "pub struct X; fn g() { crate::a::f() }"),
            ("c.rs", "use crate::a::f;"),
        ]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].inside, v(""));
        assert_eq!(cycles[0].members, vec!["a", "b"]);
        let text = cycles[0].to_string();
        assert!(text.contains("crate::a uses use crate::b::X"), "{text}");
        assert!(text.contains("crate::b uses crate::a::f"), "{text}");
    }

    #[test]
    fn a_cycle_through_folders_is_found_at_the_folder_that_holds_both() {
        let g = graph(&[
            ("lib.rs", "pub mod engine; pub mod run;"),
            (
                "engine/mod.rs",
                "pub mod limits; pub mod host; pub use host::Host;",
            ),
            ("engine/limits.rs", "use crate::run::dir::Plan;"),
            (
                "engine/host.rs",
                "pub struct Host; use super::limits::Facts;",
            ),
            ("run/mod.rs", "pub mod dir;"),
            ("run/dir.rs", "use crate::engine::Host; pub struct Plan;"),
        ]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].inside, v(""));
        assert_eq!(cycles[0].members, vec!["engine", "run"]);
        // The re-export is followed: run::dir uses engine::host, not engine's facade.
        assert!(g
            .edges()
            .any(|e| e.from == v("run::dir") && e.to == v("engine::host")));
    }

    #[test]
    fn a_folder_and_its_children_are_not_a_cycle() {
        let g = graph(&[
            ("lib.rs", "pub mod engine;"),
            (
                "engine/mod.rs",
                "pub mod docker; pub trait Engine {} fn new() { docker::Docker::new() }",
            ),
            ("engine/docker.rs", "use super::Engine; pub struct Docker;"),
        ]);
        assert!(g.cycles().is_empty(), "{:?}", g.cycles());
    }

    #[test]
    fn relative_child_paths_and_super_chains_resolve() {
        let g = graph(&[
            ("lib.rs", "pub mod a;"),
            ("a/mod.rs", "pub mod b; pub mod c;"),
            ("a/b.rs", "fn f() { super::c::g() }"),
            ("a/c.rs", "pub fn g() {} fn h() { super::super::a::b::f() }"),
        ]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].inside, v("a"));
        assert_eq!(cycles[0].members, vec!["b", "c"]);
    }
}
