//! Shared by the test files that read the case suite (`tests/cases/*.mc` at the workspace root).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One parsed case file.
#[derive(Debug)]
pub struct Case {
    pub path: PathBuf,
    /// Everything before the first section marker, verbatim.
    pub header: String,
    pub expr: String,
    pub decls: Vec<String>,
    pub wrt: Vec<String>,
    pub order: usize,
    pub dims: Vec<(String, usize)>,
    /// Expected sections as found in the file.
    pub sections: Vec<(String, String)>,
}

impl Case {
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn decls(&self) -> String {
        self.decls.join("; ")
    }
}

pub fn parse_case(path: &Path, text: &str) -> Result<Case, String> {
    let mut case = Case {
        path: path.to_path_buf(),
        header: String::new(),
        expr: String::new(),
        decls: Vec::new(),
        wrt: Vec::new(),
        order: 1,
        dims: Vec::new(),
        sections: Vec::new(),
    };
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next_if(|l| !l.starts_with("--- ")) {
        case.header.push_str(line);
        case.header.push('\n');
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (key, value) = t
            .split_once(':')
            .ok_or_else(|| format!("header line `{t}` is not `key: value`"))?;
        let value = value.trim();
        match key.trim() {
            "expr" => case.expr = value.to_string(),
            "decl" => case.decls.push(value.to_string()),
            "wrt" => case
                .wrt
                .extend(value.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty())),
            "order" => case.order = value.parse().map_err(|_| format!("`order: {value}` is not a number"))?,
            "dims" => {
                for pair in value.split_whitespace() {
                    let (n, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("`dims:` entry `{pair}` is not NAME=VALUE"))?;
                    let v = v
                        .parse()
                        .map_err(|_| format!("`dims:` entry `{pair}` is not NAME=VALUE"))?;
                    case.dims.push((n.to_string(), v));
                }
            }
            other => return Err(format!("unknown directive `{other}:`")),
        }
    }
    if case.expr.is_empty() {
        return Err("missing `expr:`".into());
    }
    if case.wrt.is_empty() {
        return Err("missing `wrt:`".into());
    }
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in lines {
        if let Some(name) = line.strip_prefix("--- ") {
            if let Some((n, body)) = current.take() {
                case.sections.push((n, join_body(&body)));
            }
            current = Some((name.trim().to_string(), Vec::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    if let Some((n, body)) = current {
        case.sections.push((n, join_body(&body)));
    }
    Ok(case)
}

pub fn join_body(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.truncate(s.trim_end().len());
    s
}

/// The file as it should be: the header, then the sections.
pub fn write_case(header: &str, sections: &[(String, String)]) -> String {
    let mut out = header.trim_end().to_string();
    out.push('\n');
    for (name, body) in sections {
        let _ = writeln!(out, "--- {name}");
        if !body.is_empty() {
            out.push_str(body);
            out.push('\n');
        }
    }
    out
}

/// Whether braces and `\left`/`\right` pair up properly.
pub fn latex_balanced(s: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &s[i..];
        if rest.starts_with("\\{") || rest.starts_with("\\}") || rest.starts_with("\\\\") {
            i += 2;
        } else if rest.starts_with("\\left") && !rest[5..].starts_with(|c: char| c.is_alphabetic()) {
            stack.push("\\left");
            i += 5;
        } else if rest.starts_with("\\right") && !rest[6..].starts_with(|c: char| c.is_alphabetic()) {
            if stack.pop() != Some("\\left") {
                return Err(format!("unmatched \\right at byte {i}"));
            }
            i += 6;
        } else if b[i] == b'{' {
            stack.push("{");
            i += 1;
        } else if b[i] == b'}' {
            if stack.pop() != Some("{") {
                return Err(format!("unmatched }} at byte {i}"));
            }
            i += 1;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("unclosed {open}"));
    }
    double_script(s)
}

/// A superscript (or subscript) directly followed by another one, like
/// `X^{-1}^\top`: KaTeX rejects it ("Double superscript").
pub fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mc"))
        .collect();
    files.sort();
    files
}

pub fn double_script(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            // Skip a control sequence, so `\^` or `\_` is not a script.
            i += 2;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            continue;
        }
        if b[i] != b'^' && b[i] != b'_' {
            i += 1;
            continue;
        }
        let op = b[i];
        let at = i;
        i += 1;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        // The script's argument: a group, a control sequence or one character.
        if i < b.len() && b[i] == b'{' {
            let mut depth = 0;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 1,
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        } else if i < b.len() && b[i] == b'\\' {
            i += 1;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
        } else {
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j < b.len() && b[j] == op {
            let what = if op == b'^' { "superscript" } else { "subscript" };
            let end = (j + 1).min(s.len());
            let mut start = at.saturating_sub(12);
            while !s.is_char_boundary(start) {
                start -= 1;
            }
            return Err(format!("double {what} at byte {at}: `{}`", &s[start..end]));
        }
    }
    Ok(())
}
