//! The Velostream dialect on top of DataFusion SQL.
//!
//! A small tokenizer (aware of strings, quoted identifiers and comments)
//! recognises the Velostream-only parts — `kafka://` / `file://` sources,
//! `EMIT CHANGES|FINAL`, `WINDOW TUMBLING|SLIDING(...)`, and the catalog
//! commands — and rewrites the rest into plain DataFusion SQL, keeping a map
//! from rewritten offsets back to the client's text so error positions point
//! at what the user typed.

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// No EMIT clause: a bounded snapshot.
    Snapshot,
    Changes,
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size_us: i64 },
    Sliding { size_us: i64, advance_us: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    pub time_column: Option<String>,
}

impl WindowSpec {
    pub fn size_us(&self) -> i64 {
        match self.kind {
            WindowKind::Tumbling { size_us } | WindowKind::Sliding { size_us, .. } => size_us,
        }
    }
}

/// A query rewritten into DataFusion SQL.
#[derive(Debug, Clone)]
pub struct QueryText {
    pub sql: String,
    pub emit: Emit,
    /// Source URIs the query names (`kafka://trades`, `file:///x.csv`), each
    /// registered as a table of that exact name.
    pub uris: Vec<String>,
    pub window: Option<WindowSpec>,
    /// For every char of `sql`, its 1-based offset in the original text.
    origin: Vec<u32>,
}

impl QueryText {
    /// No query at all: a context with just the catalog in it.
    pub fn empty() -> Self {
        Self {
            sql: String::new(),
            emit: Emit::Snapshot,
            uris: Vec::new(),
            window: None,
            origin: Vec::new(),
        }
    }

    /// Maps a 1-based offset in `sql` back to the client's text.
    pub fn original_position(&self, rewritten: u32) -> u32 {
        let i = rewritten.saturating_sub(1) as usize;
        self.origin
            .get(i)
            .or(self.origin.last())
            .copied()
            .unwrap_or(rewritten)
    }
}

#[derive(Debug, Clone)]
pub enum Statement {
    Query(QueryText),
    ShowStreams,
    ShowTables,
    ShowJobs,
    Describe(String),
    CreateView {
        name: String,
        or_replace: bool,
        /// The defining query as the client wrote it.
        definition: String,
    },
    RenameView {
        from: String,
        to: String,
    },
    DropView {
        name: String,
        if_exists: bool,
    },
    /// Accepted so tools' `DROP TABLE IF EXISTS` of a name that is not
    /// there succeeds; streams and tables themselves come from the config.
    DropTable {
        name: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    QuotedIdent,
    Str,
    Number,
    Uri,
    Punct,
    Space,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

struct Lexed {
    chars: Vec<char>,
    tokens: Vec<Token>,
}

impl Lexed {
    fn text(&self, t: &Token) -> String {
        self.chars[t.start..t.end].iter().collect()
    }
    fn upper(&self, t: &Token) -> String {
        self.text(t).to_ascii_uppercase()
    }
}

fn lex(sql: &str) -> Result<Lexed> {
    let chars: Vec<char> = sql.chars().collect();
    let n = chars.len();
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k).is_some_and(|x| x.eq_ignore_ascii_case(&c)))
    };
    let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    while i < n {
        let start = i;
        let c = chars[i];
        let kind = if c.is_whitespace() {
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if at(i, "--") {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
            Kind::Space
        } else if at(i, "/*") {
            i += 2;
            while i < n && !at(i, "*/") {
                i += 1;
            }
            if i >= n {
                return Err(EngineError::Syntax {
                    message: "unterminated /* comment".into(),
                    position: start as u32 + 1,
                });
            }
            i += 2;
            Kind::Space
        } else if c == '\'' || c == '"' {
            i += 1;
            loop {
                if i >= n {
                    let what = if c == '\'' {
                        "quoted string"
                    } else {
                        "quoted identifier"
                    };
                    return Err(EngineError::Syntax {
                        message: format!("unterminated {what}"),
                        position: start as u32 + 1,
                    });
                }
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            if c == '\'' {
                Kind::Str
            } else {
                Kind::QuotedIdent
            }
        } else if (at(i, "kafka://") || at(i, "file://")) && !(i > 0 && word_char(chars[i - 1])) {
            while i < n
                && (word_char(chars[i]) || matches!(chars[i], '.' | '-' | ':' | '/' | '%' | '~'))
            {
                i += 1;
            }
            Kind::Uri
        } else if c.is_ascii_digit() {
            while i < n && (word_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            Kind::Number
        } else if word_char(c) {
            while i < n && word_char(chars[i]) {
                i += 1;
            }
            Kind::Word
        } else {
            i += 1;
            Kind::Punct
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    Ok(Lexed { chars, tokens })
}

/// Parses one statement of the dialect.
pub fn parse(sql: &str) -> Result<Statement> {
    let lexed = lex(sql)?;
    let words: Vec<&Token> = lexed
        .tokens
        .iter()
        .filter(|t| t.kind != Kind::Space)
        .collect();
    let up = |i: usize| words.get(i).map(|t| lexed.upper(t)).unwrap_or_default();
    let name_from = |i: usize| -> (String, usize) { object_name(&lexed, &words, i) };

    match up(0).as_str() {
        "SHOW" => match up(1).as_str() {
            "STREAMS" => return Ok(Statement::ShowStreams),
            "TABLES" => return Ok(Statement::ShowTables),
            "JOBS" | "QUERIES" => return Ok(Statement::ShowJobs),
            _ => {}
        },
        "DESCRIBE" | "DESC" if words.len() >= 2 => {
            let (name, _) = name_from(1);
            return Ok(Statement::Describe(name));
        }
        "CREATE" => {
            let or_replace = up(1) == "OR" && up(2) == "REPLACE";
            let at = if or_replace { 3 } else { 1 };
            if up(at) == "VIEW" {
                let (name, next) = name_from(at + 1);
                if up(next) != "AS" {
                    return Err(syntax_at(&words, next, "expected AS after the view name"));
                }
                let body = words
                    .get(next + 1)
                    .ok_or_else(|| syntax_at(&words, next, "expected a query after AS"))?;
                let definition: String = lexed.chars[body.start..].iter().collect();
                let definition = definition.trim().trim_end_matches(';').trim().to_string();
                return Ok(Statement::CreateView {
                    name,
                    or_replace,
                    definition: strip_outer_parens(&definition),
                });
            }
        }
        "ALTER" if matches!(up(1).as_str(), "VIEW" | "TABLE") => {
            let (from, next) = name_from(2);
            if up(next) == "RENAME" && up(next + 1) == "TO" {
                let (to, _) = name_from(next + 2);
                return Ok(Statement::RenameView { from, to });
            }
            return Err(EngineError::Unsupported(
                "ALTER VIEW supports only RENAME TO".into(),
            ));
        }
        "DROP" if matches!(up(1).as_str(), "VIEW" | "TABLE") => {
            let if_exists = up(2) == "IF" && up(3) == "EXISTS";
            let (name, _) = name_from(if if_exists { 4 } else { 2 });
            return Ok(if up(1) == "VIEW" {
                Statement::DropView { name, if_exists }
            } else {
                Statement::DropTable { name, if_exists }
            });
        }
        _ => {}
    }
    rewrite_query(&lexed).map(Statement::Query)
}

fn syntax_at(words: &[&Token], i: usize, message: &str) -> EngineError {
    let position = words
        .get(i)
        .or(words.last())
        .map(|t| t.start as u32 + 1)
        .unwrap_or(0);
    EngineError::Syntax {
        message: format!("syntax error: {message}"),
        position,
    }
}

/// Reads a possibly qualified, possibly quoted name starting at word `i`;
/// returns its last part (relations live in one flat namespace) and the index
/// of the word after it.
fn object_name(lexed: &Lexed, words: &[&Token], mut i: usize) -> (String, usize) {
    let mut last = String::new();
    while let Some(t) = words.get(i) {
        last = match t.kind {
            Kind::QuotedIdent => {
                let s = lexed.text(t);
                s[1..s.len() - 1].replace("\"\"", "\"")
            }
            Kind::Word | Kind::Uri => lexed.text(t).to_lowercase(),
            _ => break,
        };
        i += 1;
        if words.get(i).is_some_and(|t| lexed.text(t) == ".") {
            i += 1;
        } else {
            break;
        }
    }
    (last, i)
}

fn strip_outer_parens(s: &str) -> String {
    let t = s.trim();
    if t.starts_with('(') && t.ends_with(')') {
        // Only when the parens enclose everything.
        let mut depth = 0;
        for (i, c) in t.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 && i != t.len() - 1 {
                        return t.to_string();
                    }
                }
                _ => {}
            }
        }
        return t[1..t.len() - 1].trim().to_string();
    }
    t.to_string()
}

enum Edit {
    Keep,
    Replace(String),
    Drop,
    /// Keep the token and add text after it.
    Append(String),
}

fn rewrite_query(lexed: &Lexed) -> Result<QueryText> {
    let toks = &lexed.tokens;
    let mut edits: Vec<Edit> = toks.iter().map(|_| Edit::Keep).collect();
    let mut emit = Emit::Snapshot;
    let mut window = None;
    let mut uris = Vec::new();
    let mut group_by_at = None;
    let mut window_at = None;
    let mut depth = 0i32;
    let next_word = |from: usize| (from..toks.len()).find(|&j| toks[j].kind != Kind::Space);
    let prev_word = |from: usize| (0..from).rev().find(|&j| toks[j].kind != Kind::Space);

    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        match t.kind {
            Kind::Punct if lexed.text(&t) == "(" => depth += 1,
            Kind::Punct if lexed.text(&t) == ")" => depth -= 1,
            Kind::Uri => {
                let uri = lexed.text(&t);
                edits[i] = Edit::Replace(format!("\"{uri}\""));
                uris.push(uri);
            }
            Kind::Str => {
                let s = lexed.text(&t);
                let inner = &s[1..s.len() - 1];
                let after_from = prev_word(i)
                    .is_some_and(|p| matches!(lexed.upper(&toks[p]).as_str(), "FROM" | "JOIN"));
                if after_from && (inner.starts_with("kafka://") || inner.starts_with("file://")) {
                    edits[i] = Edit::Replace(format!("\"{inner}\""));
                    uris.push(inner.to_string());
                }
            }
            Kind::Word if depth == 0 => match lexed.upper(&t).as_str() {
                "EMIT" => {
                    let j = next_word(i + 1);
                    let mode = j.map(|j| lexed.upper(&toks[j])).unwrap_or_default();
                    emit = match mode.as_str() {
                        "CHANGES" => Emit::Changes,
                        "FINAL" => Emit::Final,
                        _ => {
                            return Err(EngineError::Syntax {
                                message: "syntax error: expected CHANGES or FINAL after EMIT"
                                    .into(),
                                position: j.map(|j| toks[j].start).unwrap_or(t.end) as u32 + 1,
                            })
                        }
                    };
                    let j = j.unwrap_or(i);
                    for e in &mut edits[i..=j] {
                        *e = Edit::Drop;
                    }
                    i = j;
                }
                "GROUP" => {
                    if let Some(j) = next_word(i + 1).filter(|&j| lexed.upper(&toks[j]) == "BY") {
                        group_by_at = Some(j);
                    }
                }
                "WINDOW" => {
                    let (spec, end) = parse_window(lexed, i)?;
                    window = Some(spec);
                    window_at = Some(i);
                    for e in &mut edits[i..=end] {
                        *e = Edit::Drop;
                    }
                    i = end;
                }
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    if window.is_some() {
        match group_by_at {
            Some(j) => edits[j] = Edit::Append(" window_start, window_end,".into()),
            None => {
                let w = window_at.expect("window clause position");
                edits[w] = Edit::Replace("GROUP BY window_start, window_end".into());
            }
        }
    }
    if emit == Emit::Final && window.is_none() {
        return Err(EngineError::Window(
            "EMIT FINAL requires a window: there is no point at which a group is final".into(),
        ));
    }

    let mut sql = String::new();
    let mut origin = Vec::new();
    for (t, edit) in toks.iter().zip(&edits) {
        let here = t.start as u32 + 1;
        let push = |sql: &mut String, origin: &mut Vec<u32>, s: &str, o: u32| {
            for c in s.chars() {
                sql.push(c);
                origin.push(o);
            }
        };
        match edit {
            Edit::Keep | Edit::Append(_) => {
                for (k, c) in lexed.chars[t.start..t.end].iter().enumerate() {
                    sql.push(*c);
                    origin.push(here + k as u32);
                }
                if let Edit::Append(extra) = edit {
                    push(&mut sql, &mut origin, extra, here);
                }
            }
            Edit::Replace(s) => push(&mut sql, &mut origin, s, here),
            Edit::Drop => push(&mut sql, &mut origin, " ", here),
        }
    }
    Ok(QueryText {
        sql,
        emit,
        uris,
        window,
        origin,
    })
}

/// Parses `WINDOW TUMBLING(size)`, `WINDOW TUMBLING(col, size)`,
/// `WINDOW SLIDING(size, advance)`, `WINDOW SLIDING(col, size, advance)`.
/// Returns the spec and the index of the closing parenthesis token.
fn parse_window(lexed: &Lexed, at: usize) -> Result<(WindowSpec, usize)> {
    let toks = &lexed.tokens;
    let err = |i: usize, m: &str| EngineError::Syntax {
        message: format!("syntax error: {m}"),
        position: toks.get(i).map(|t| t.start).unwrap_or(lexed.chars.len()) as u32 + 1,
    };
    let words: Vec<usize> = (at + 1..toks.len())
        .filter(|&j| toks[j].kind != Kind::Space)
        .collect();
    let Some(&kind_at) = words.first() else {
        return Err(err(at, "expected TUMBLING or SLIDING after WINDOW"));
    };
    let kind = lexed.upper(&toks[kind_at]);
    if words.get(1).is_none_or(|&j| lexed.text(&toks[j]) != "(") {
        return Err(err(kind_at, "expected ( after the window kind"));
    }
    let open = words[1];
    let (mut depth, mut args, mut current, mut close) = (0, Vec::new(), String::new(), None);
    for (j, t) in toks.iter().enumerate().skip(open) {
        let text = lexed.text(t);
        match text.as_str() {
            "(" => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ")" => {
                depth -= 1;
                if depth == 0 {
                    args.push(std::mem::take(&mut current));
                    close = Some(j);
                    break;
                }
            }
            "," if depth == 1 => {
                args.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push_str(&text);
    }
    let close = close.ok_or_else(|| err(open, "unclosed window clause"))?;
    let mut column = None;
    let mut durations = Vec::new();
    for (k, arg) in args.iter().map(|a| a.trim()).enumerate() {
        match parse_duration_us(arg) {
            Some(d) if d > 0 => durations.push(d),
            Some(_) => return Err(EngineError::Window("window sizes must be positive".into())),
            None if k == 0 && !arg.is_empty() => column = Some(arg.trim_matches('"').to_string()),
            None => {
                return Err(err(
                    open,
                    &format!("cannot read `{arg}` as a window duration"),
                ))
            }
        }
    }
    let kind = match (kind.as_str(), durations.as_slice()) {
        ("TUMBLING", [size]) => WindowKind::Tumbling { size_us: *size },
        ("SLIDING" | "HOPPING", [size, advance]) => {
            if advance > size || size % advance != 0 {
                return Err(EngineError::Window(
                    "a sliding window's size must be a whole multiple of its advance".into(),
                ));
            }
            WindowKind::Sliding {
                size_us: *size,
                advance_us: *advance,
            }
        }
        ("TUMBLING", _) => return Err(err(open, "TUMBLING takes ([time column,] size)")),
        ("SLIDING" | "HOPPING", _) => {
            return Err(err(open, "SLIDING takes ([time column,] size, advance)"))
        }
        ("SESSION", _) => {
            return Err(EngineError::Unsupported(
                "session windows are not supported".into(),
            ))
        }
        _ => return Err(err(kind_at, "expected TUMBLING or SLIDING after WINDOW")),
    };
    Ok((
        WindowSpec {
            kind,
            time_column: column,
        },
        close,
    ))
}

/// `5s`, `1m`, `2h`, `500ms`, `1d`, `INTERVAL '1' MINUTE`, `INTERVAL '1 minute'`,
/// `'30 seconds'` → microseconds.
pub fn parse_duration_us(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = if t.len() > 8 && t[..8].eq_ignore_ascii_case("interval") {
        t[8..].trim()
    } else {
        t
    };
    let t = t.replace('\'', " ");
    let t = t.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let amount: i64 = t[..digits_end].parse().ok()?;
    let unit = t[digits_end..].trim().to_ascii_lowercase();
    let unit_us: i64 = match unit.as_str() {
        "ms" | "millisecond" | "milliseconds" => 1_000,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000_000,
        "d" | "day" | "days" => 86_400_000_000,
        _ => return None,
    };
    amount.checked_mul(unit_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> QueryText {
        match parse(sql).unwrap() {
            Statement::Query(q) => q,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rewrites_sources_and_emit() {
        let q = query("SELECT * FROM kafka://trades WHERE price > 1 EMIT CHANGES;");
        assert_eq!(q.emit, Emit::Changes);
        assert_eq!(q.uris, vec!["kafka://trades"]);
        assert!(q.sql.contains("FROM \"kafka://trades\" WHERE"));
        assert!(!q.sql.contains("EMIT"));
        let q = query("select 'kafka://x' from 'kafka://localhost:9092/t'");
        assert_eq!(q.uris, vec!["kafka://localhost:9092/t"]);
        assert!(q.sql.starts_with("select 'kafka://x' from \"kafka://"));
    }

    #[test]
    fn keywords_inside_strings_and_comments_are_left_alone() {
        let q = query("SELECT 'EMIT CHANGES' -- EMIT FINAL\nFROM t");
        assert_eq!(q.emit, Emit::Snapshot);
        assert_eq!(q.sql, "SELECT 'EMIT CHANGES' -- EMIT FINAL\nFROM t");
    }

    #[test]
    fn windows_join_the_group_by() {
        let q = query(
            "SELECT symbol, COUNT(*) FROM trades GROUP BY symbol WINDOW TUMBLING(1m) EMIT FINAL",
        );
        assert_eq!(
            q.window.unwrap().kind,
            WindowKind::Tumbling {
                size_us: 60_000_000
            }
        );
        assert!(q.sql.contains("GROUP BY window_start, window_end, symbol"));
        let q = query("SELECT COUNT(*) FROM t WINDOW SLIDING(ts, INTERVAL '1' MINUTE, 10s)");
        let w = q.window.unwrap();
        assert_eq!(w.time_column.as_deref(), Some("ts"));
        assert_eq!(
            w.kind,
            WindowKind::Sliding {
                size_us: 60_000_000,
                advance_us: 10_000_000
            }
        );
        assert!(q.sql.contains("GROUP BY window_start, window_end"));
    }

    #[test]
    fn positions_map_back_to_the_original_text() {
        let original = "SELECT x FROM kafka://t WHERE y > 1 EMIT CHANGES";
        let q = query(original);
        // Before the rewrite, offsets are the same.
        let from = q.sql.find("FROM").unwrap() as u32 + 1;
        assert_eq!(q.original_position(from), 10);
        // `kafka://t` is quoted in the rewrite: what follows it has moved,
        // and maps back to where the client wrote it.
        let rewritten_where = q.sql.find("WHERE").unwrap() as u32 + 1;
        let original_where = original.find("WHERE").unwrap() as u32 + 1;
        assert_ne!(rewritten_where, original_where, "{}", q.sql);
        assert_eq!(q.original_position(rewritten_where), original_where);
    }

    #[test]
    fn emit_final_without_window_is_a_window_error() {
        let err = parse("SELECT a, COUNT(*) FROM t GROUP BY a EMIT FINAL").unwrap_err();
        assert!(matches!(err, EngineError::Window(_)));
    }

    #[test]
    fn catalog_commands() {
        assert!(matches!(
            parse("show streams").unwrap(),
            Statement::ShowStreams
        ));
        match parse("CREATE OR REPLACE VIEW \"db\".\"public\".\"v1\" AS (SELECT 1);").unwrap() {
            Statement::CreateView {
                name,
                or_replace,
                definition,
            } => {
                assert_eq!(name, "v1");
                assert!(or_replace);
                assert_eq!(definition, "SELECT 1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("drop view if exists v cascade").unwrap(),
            Statement::DropView {
                if_exists: true,
                ..
            }
        ));
        assert!(matches!(
            parse("drop table if exists \"public\".\"v__backup\" cascade").unwrap(),
            Statement::DropTable {
                if_exists: true,
                name,
            } if name == "v__backup"
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("500ms"), Some(500_000));
        assert_eq!(parse_duration_us("INTERVAL '5' SECOND"), Some(5_000_000));
        assert_eq!(parse_duration_us("'2 hours'"), Some(7_200_000_000));
        assert_eq!(parse_duration_us("ts"), None);
    }
}
