//! Splitting a simple Query into statements and recognising the ones the
//! gateway answers itself (sessions, transactions, cursors, COPY framing).

/// One statement of a Query message: its text and its char offset in the
/// message (for error positions).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub offset: u32,
}

/// Splits on top-level `;`, aware of quotes, comments and dollar quoting.
/// Comment-only and empty pieces are kept only when they are all there is.
pub fn split(sql: &str) -> Vec<Piece> {
    let chars: Vec<char> = sql.chars().collect();
    let mut pieces = Vec::new();
    let (mut i, mut start, mut depth) = (0, 0, 0i32);
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                i += 1;
                while i < n {
                    if chars[i] == c {
                        if i + 1 < n && chars[i + 1] == c {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            '-' if i + 1 < n && chars[i + 1] == '-' => {
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if i + 1 < n && chars[i + 1] == '*' => {
                i += 2;
                while i + 1 < n && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 1;
            }
            '$' => {
                // $tag$ ... $tag$
                let mut j = i + 1;
                while j < n && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j < n && chars[j] == '$' && !(i > 0 && chars[i - 1].is_alphanumeric()) {
                    let tag: String = chars[i..=j].iter().collect();
                    let tag_chars: Vec<char> = tag.chars().collect();
                    let mut k = j + 1;
                    while k + tag_chars.len() <= n && chars[k..k + tag_chars.len()] != tag_chars[..]
                    {
                        k += 1;
                    }
                    i = (k + tag_chars.len()).min(n) - 1;
                }
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            ';' if depth <= 0 => {
                pieces.push(Piece {
                    text: chars[start..i].iter().collect(),
                    offset: start as u32,
                });
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < n {
        pieces.push(Piece {
            text: chars[start..].iter().collect(),
            offset: start as u32,
        });
    }
    let real: Vec<Piece> = pieces
        .iter()
        .filter(|p| !strip_comments(&p.text).trim().is_empty())
        .cloned()
        .collect();
    if real.is_empty() {
        vec![Piece {
            text: String::new(),
            offset: 0,
        }]
    } else {
        real
    }
}

/// Removes leading comments and whitespace (tools prepend `/* ... */` and
/// `-- ...` lines to real statements).
pub fn strip_comments(s: &str) -> &str {
    let mut s = s.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            return s;
        }
    }
}

/// Words of a statement, lowercased, with quotes removed from identifiers;
/// enough to classify it.
pub fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '\'' => {
                let mut lit = String::from("'");
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                            lit.push('\'');
                            continue;
                        }
                        break;
                    }
                    lit.push(c);
                }
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(lit);
            }
            c if c.is_whitespace() || c == ',' || c == ';' || c == '=' || c == '(' || c == ')' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                if c == '=' || c == '(' || c == ')' || c == ',' {
                    out.push(c.to_string());
                }
            }
            c => cur.extend(c.to_lowercase()),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `(query)` of `COPY (query) TO STDOUT ...` and whether CSV/HEADER were asked.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOut {
    pub query: String,
    pub query_offset: u32,
    pub csv: bool,
    pub header: bool,
}

pub fn parse_copy(text: &str) -> Option<Result<CopyOut, String>> {
    let t = text.trim_start();
    let lead = text.len() - t.len();
    if t.len() < 4 || !t[..4].eq_ignore_ascii_case("copy") {
        return None;
    }
    let rest = t[4..].trim_start();
    if !rest.starts_with('(') {
        return Some(Err(
            "COPY supports only (query) TO STDOUT on a streaming gateway".into(),
        ));
    }
    // Find the matching parenthesis (quotes aware).
    let (mut depth, mut quote, mut end) = (0i32, None::<char>, None);
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(end) = end else {
        return Some(Err("syntax error: unbalanced parentheses in COPY".into()));
    };
    let query = &rest[1..end];
    let tail = words(&rest[end + 1..]);
    if tail.first().map(String::as_str) != Some("to")
        || tail.get(1).map(String::as_str) != Some("stdout")
    {
        return Some(Err("COPY supports only TO STDOUT".into()));
    }
    let opts = &tail[2..];
    let has = |w: &str| opts.iter().any(|o| o == w);
    let csv = has("csv");
    let header = has("header")
        && !opts
            .windows(2)
            .any(|w| w[0] == "header" && (w[1] == "false" || w[1] == "off"));
    if opts.iter().any(|o| o == "binary") {
        return Some(Err("COPY BINARY is not supported; use text or CSV".into()));
    }
    let query_offset = (lead + (t.len() - rest.len()) + 1) as u32;
    Some(Ok(CopyOut {
        query: query.to_string(),
        query_offset: text[..query_offset as usize].chars().count() as u32,
        csv,
        header,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_outside_quotes_and_comments() {
        let p = split("SELECT ';'; -- x;\nSELECT 2; /* ; */");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].text, "SELECT ';'");
        assert_eq!(p[1].text.trim(), "-- x;\nSELECT 2");
        assert_eq!(split(";").len(), 1);
        assert_eq!(split("-- ping")[0].text, "");
        assert_eq!(split("select $$a;b$$; select 1").len(), 2);
    }

    #[test]
    fn copy_forms() {
        let c = parse_copy("COPY (SELECT 1) TO STDOUT WITH (FORMAT csv, HEADER)")
            .unwrap()
            .unwrap();
        assert_eq!(c.query, "SELECT 1");
        assert!(c.csv && c.header);
        assert_eq!(c.query_offset, 6);
        let c = parse_copy("copy (select ')') to stdout").unwrap().unwrap();
        assert_eq!(c.query, "select ')'");
        assert!(!c.csv);
        assert!(parse_copy("COPY t FROM STDIN").unwrap().is_err());
        assert!(parse_copy("SELECT 1").is_none());
    }
}
