//! What a statement is, decided once from its leading words: the gateway's
//! own statements (transactions, settings, cursors, COPY framing, trivial
//! SELECTs) with their arguments parsed, or a query for the catalog or an
//! engine node. The simple-query path, Describe and Execute all act on the
//! same `Statement`.

use super::lexer::{Kind, Lexer, Token};
use crate::error::GatewayError;

/// One classified statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Nothing but comments and whitespace: EmptyQueryResponse.
    Empty,
    /// BEGIN / START TRANSACTION, with the tag to answer.
    Begin {
        tag: &'static str,
    },
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    RollbackToSavepoint,
    /// SAVEPOINT or RELEASE (only the tag differs).
    Savepoint {
        tag: &'static str,
    },
    Set(Set),
    /// RESET name; `None` for RESET ALL.
    Reset(Option<String>),
    /// DISCARD ALL/PLANS/...: the tag to answer.
    Discard {
        tag: String,
    },
    /// DEALLOCATE [PREPARE] name; `None` deallocates all.
    Deallocate {
        name: Option<String>,
        tag: &'static str,
    },
    /// LISTEN / UNLISTEN: accepted, nothing is ever notified.
    Listen {
        tag: &'static str,
    },
    /// CLOSE cursor; `None` for CLOSE ALL.
    CloseCursor(Option<String>),
    /// SHOW ALL.
    ShowAll,
    /// SHOW of one setting, as the client spelled it.
    Show(String),
    /// `SELECT` of values the gateway knows, without FROM.
    LocalSelect(Vec<SelectItem>),
    Declare(Declare),
    Fetch(Fetch),
    Copy(CopyOut),
    /// Anything else: the catalog's or an engine node's.
    Query,
    /// A statement of ours that does not parse: the error it answers with.
    Invalid(GatewayError),
}

/// A SET statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Set {
    /// `SET [SESSION|LOCAL] name {TO|=} value[, ...]`, values unquoted and
    /// joined with ", ".
    Value { name: String, value: String },
    /// `SET TRANSACTION ...` and `SET SESSION CHARACTERISTICS ...`: accepted.
    Ignored,
}

/// One item of a local SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub value: LocalValue,
    /// `AS alias`, lowercased unless quoted.
    pub alias: Option<String>,
}

/// A value a local SELECT can produce.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalValue {
    Version,
    CurrentDatabase,
    /// current_user, session_user, user: the column name to answer with.
    User(&'static str),
    CurrentSchema,
    BackendPid,
    AdvisoryUnlockAll,
    Null,
    Bool(bool),
    Int(i32),
    Text(String),
}

/// `DECLARE name [BINARY] CURSOR [WITH HOLD] FOR query`.
#[derive(Debug, Clone, PartialEq)]
pub struct Declare {
    pub name: String,
    pub holdable: bool,
    pub query: String,
    /// Character offset of the query within the statement.
    pub query_offset: u32,
}

/// `FETCH`/`MOVE [FORWARD|NEXT] [n|ALL] [FROM|IN] cursor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub cursor: String,
    /// `None` for ALL.
    pub count: Option<u64>,
    /// MOVE: skip the rows instead of sending them.
    pub moving: bool,
}

/// `COPY (query) TO STDOUT [options]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOut {
    pub query: String,
    /// Character offset of the query within the statement.
    pub query_offset: u32,
    pub csv: bool,
    pub header: bool,
}

impl Statement {
    /// Whether a failed transaction block still runs it (it ends the block).
    pub fn ends_failed_transaction(&self) -> bool {
        matches!(
            self,
            Statement::Commit | Statement::Rollback | Statement::RollbackToSavepoint
        )
    }

    /// Whether the gateway answers it without the catalog or an engine.
    pub fn is_local(&self) -> bool {
        !matches!(self, Statement::Query | Statement::Copy(_))
    }
}

/// Words of a statement as the classifier reads them: tokens that touch
/// are one word (`pg_catalog.x`, `-3`), unquoted words lowercased, quoted
/// identifiers unquoted, string literals as `'value` (the leading quote
/// marks a literal), and `,` `=` `(` `)` words of their own.
fn words(sql: &str, tokens: &[Token]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut joinable = false;
    let mut prev_end = usize::MAX;
    for &t in tokens {
        let separator = t.kind == Kind::Punct
            && matches!(sql.as_bytes()[t.start], b',' | b'=' | b'(' | b')' | b';');
        let text = match t.kind {
            Kind::Word => t.text(sql).to_lowercase(),
            Kind::QuotedIdent => t.unquoted(sql),
            Kind::String => format!("'{}", t.unquoted(sql)),
            Kind::Punct => t.text(sql).to_string(),
        };
        if separator || t.kind == Kind::String {
            if !t.is_punct(sql, b';') {
                out.push(text);
            }
            joinable = false;
        } else if joinable && t.start == prev_end {
            out.last_mut().expect("joinable").push_str(&text);
        } else {
            out.push(text);
            joinable = true;
        }
        prev_end = t.end;
    }
    out
}

/// Classifies one statement (as `split` or `single` cut it).
pub fn classify(text: &str) -> Statement {
    let tokens: Vec<Token> = Lexer::new(text).take(LEADING_TOKENS).collect();
    let Some(first) = tokens.first() else {
        return Statement::Empty;
    };
    let keyword = match first.kind {
        Kind::Word => first.text(text).to_ascii_lowercase(),
        _ => return Statement::Query,
    };
    let parsed = match keyword.as_str() {
        "begin" => Ok(Statement::Begin { tag: "BEGIN" }),
        "start" => Ok(Statement::Begin {
            tag: "START TRANSACTION",
        }),
        "commit" | "end" => Ok(Statement::Commit),
        "rollback" | "abort" => Ok(match tokens.get(1) {
            Some(t) if t.is_word(text, "to") => Statement::RollbackToSavepoint,
            _ => Statement::Rollback,
        }),
        "savepoint" => Ok(Statement::Savepoint { tag: "SAVEPOINT" }),
        "release" => Ok(Statement::Savepoint { tag: "RELEASE" }),
        "listen" => Ok(Statement::Listen { tag: "LISTEN" }),
        "unlisten" => Ok(Statement::Listen { tag: "UNLISTEN" }),
        "set" => set(&words(text, &all_tokens(text))),
        "reset" | "discard" | "deallocate" | "close" | "show" => {
            Ok(simple_command(&keyword, &words(text, &tokens)))
        }
        "select" => Ok(local_select(text).map_or(Statement::Query, Statement::LocalSelect)),
        "declare" => declare(text).map(Statement::Declare),
        "fetch" | "move" => fetch(&words(text, &all_tokens(text))).map(Statement::Fetch),
        "copy" => copy(text).map(Statement::Copy),
        _ => Ok(Statement::Query),
    };
    parsed.unwrap_or_else(Statement::Invalid)
}

/// How many tokens decide a statement that is not parsed whole (a long
/// engine query is never tokenized past its start here).
const LEADING_TOKENS: usize = 16;

fn all_tokens(text: &str) -> Vec<Token> {
    Lexer::new(text).collect()
}

fn simple_command(keyword: &str, words: &[String]) -> Statement {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match keyword {
        "reset" => Statement::Reset((w(1) != "all").then(|| w(1).to_string())),
        "discard" => Statement::Discard {
            tag: format!("DISCARD {}", w(1).to_uppercase()),
        },
        "deallocate" => {
            let name = if w(1) == "prepare" { w(2) } else { w(1) };
            Statement::Deallocate {
                name: (!name.is_empty() && name != "all").then(|| name.to_string()),
                tag: if name == "all" {
                    "DEALLOCATE ALL"
                } else {
                    "DEALLOCATE"
                },
            }
        }
        "close" => Statement::CloseCursor((w(1) != "all").then(|| w(1).to_string())),
        _ => match (w(1), w(2)) {
            ("streams" | "tables" | "jobs" | "queries", _) => Statement::Query,
            ("all", _) => Statement::ShowAll,
            ("transaction", "isolation") => Statement::Show("transaction_isolation".into()),
            ("time", "zone") => Statement::Show("TimeZone".into()),
            ("", _) => {
                Statement::Invalid(GatewayError::Syntax("syntax error at end of input".into()))
            }
            (name, _) => Statement::Show(name.to_string()),
        },
    }
}

fn set(words: &[String]) -> Result<Statement, GatewayError> {
    let mut i = 1;
    if matches!(words.get(i).map(String::as_str), Some("session" | "local")) {
        i += 1;
    }
    let rest: Vec<&str> = words[i..].iter().map(String::as_str).collect();
    let (name, value_words): (String, &[&str]) = match rest.as_slice() {
        ["time", "zone", v @ ..] => ("TimeZone".into(), v),
        ["characteristics", ..] | ["transaction", ..] => return Ok(Statement::Set(Set::Ignored)),
        ["names", v @ ..] => ("client_encoding".into(), v),
        [name, "to" | "=", v @ ..] => (name.to_string(), v),
        _ => {
            return Err(GatewayError::Syntax(
                "syntax error at or near \"SET\"".into(),
            ))
        }
    };
    let value = value_words
        .iter()
        .filter(|v| **v != ",")
        .map(|v| v.strip_prefix('\'').unwrap_or(v))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Statement::Set(Set::Value { name, value }))
}

/// The items of `SELECT a, b AS x` when every one is a value the gateway
/// knows and there is no FROM or WHERE; `None` sends it on.
fn local_select(text: &str) -> Option<Vec<SelectItem>> {
    let mut items = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut depth = 0i32;
    for t in Lexer::new(text).skip(1) {
        // Local SELECTs are short: anything long goes to the backend
        // without being tokenized whole here.
        if t.is_word(text, "from")
            || t.is_word(text, "where")
            || items.len() > 64
            || current.len() > 64
        {
            return None;
        }
        if t.kind == Kind::Punct {
            match text.as_bytes()[t.start] {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b',' if depth == 0 => {
                    items.push(select_item(text, &std::mem::take(&mut current))?);
                    continue;
                }
                b';' if depth == 0 => continue,
                _ => {}
            }
        }
        current.push(t);
    }
    if !current.is_empty() {
        items.push(select_item(text, &current)?);
    }
    (!items.is_empty()).then_some(items)
}

fn select_item(text: &str, tokens: &[Token]) -> Option<SelectItem> {
    let (expr, alias) = match tokens {
        [expr @ .., as_, alias] if !expr.is_empty() && as_.is_word(text, "as") => {
            let alias = match alias.kind {
                Kind::QuotedIdent => alias.unquoted(text),
                _ => alias.text(text).to_lowercase(),
            };
            (expr, Some(alias))
        }
        _ => (tokens, None),
    };
    let value = match expr {
        [t] if t.kind == Kind::String && t.text(text).starts_with('\'') => {
            let body = &t.text(text)[1..];
            let body = body.strip_suffix('\'')?;
            if body.contains('\'') {
                return None;
            }
            LocalValue::Text(body.to_string())
        }
        [t] if t.kind == Kind::Word
            && t.end - t.start < 10
            && t.text(text).bytes().all(|b| b.is_ascii_digit()) =>
        {
            LocalValue::Int(t.text(text).parse().ok()?)
        }
        _ => {
            let lower: String = expr
                .iter()
                .map(|t| t.text(text).to_ascii_lowercase())
                .collect();
            match lower.as_str() {
                "version()" => LocalValue::Version,
                "current_database()" => LocalValue::CurrentDatabase,
                "current_user" | "current_user()" => LocalValue::User("current_user"),
                "session_user" => LocalValue::User("session_user"),
                "user" => LocalValue::User("user"),
                "current_schema()" | "current_schema" => LocalValue::CurrentSchema,
                "pg_backend_pid()" => LocalValue::BackendPid,
                "pg_advisory_unlock_all()" => LocalValue::AdvisoryUnlockAll,
                "null" => LocalValue::Null,
                "true" => LocalValue::Bool(true),
                "false" => LocalValue::Bool(false),
                _ => return None,
            }
        }
    };
    Some(SelectItem { value, alias })
}

fn declare(text: &str) -> Result<Declare, GatewayError> {
    let tokens = all_tokens(text);
    let words = words(text, &tokens);
    let name = words
        .get(1)
        .cloned()
        .ok_or_else(|| GatewayError::Syntax("syntax error: DECLARE needs a cursor name".into()))?;
    // CURSOR after the name (`DECLARE cursor CURSOR FOR` names it "cursor").
    let Some(cursor_at) = words
        .iter()
        .skip(2)
        .position(|w| w == "cursor")
        .map(|i| i + 2)
    else {
        return Err(GatewayError::Syntax("syntax error: expected CURSOR".into()));
    };
    let holdable = words[cursor_at..]
        .windows(2)
        .take_while(|w| w[0] != "for")
        .any(|w| w[0] == "with" && w[1] == "hold");
    if words[2..cursor_at].iter().any(|w| w == "binary") {
        return Err(GatewayError::Unsupported(
            "binary cursors are not supported".into(),
        ));
    }
    let for_at = tokens
        .iter()
        .position(|t| t.is_word(text, "for"))
        .ok_or_else(|| GatewayError::Syntax("syntax error: expected FOR query".into()))?;
    let query_start = tokens.get(for_at + 1).map_or(text.len(), |t| t.start);
    Ok(Declare {
        name,
        holdable,
        query: text[query_start..].to_string(),
        query_offset: text[..query_start].chars().count() as u32,
    })
}

fn fetch(words: &[String]) -> Result<Fetch, GatewayError> {
    let moving = words[0] == "move";
    let mut rest: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let cursor = rest
        .pop()
        .ok_or_else(|| GatewayError::Syntax("syntax error: FETCH needs a cursor name".into()))?
        .to_string();
    rest.retain(|w| !matches!(*w, "from" | "in" | "forward"));
    let count = match rest.as_slice() {
        [] | ["next"] => Some(1),
        ["all"] => None,
        [n] => Some(n.parse().map_err(|_| {
            GatewayError::Unsupported(format!("FETCH {n}: only forward fetching is supported"))
        })?),
        other => {
            return Err(GatewayError::Unsupported(format!(
                "FETCH {}: only forward fetching is supported",
                other.join(" ")
            )))
        }
    };
    Ok(Fetch {
        cursor,
        count,
        moving,
    })
}

fn copy(text: &str) -> Result<CopyOut, GatewayError> {
    let unsupported = |m: &str| GatewayError::Unsupported(m.into());
    let mut tokens = Lexer::new(text).skip(1);
    let open = tokens
        .next()
        .filter(|t| t.is_punct(text, b'('))
        .ok_or_else(|| {
            unsupported("COPY supports only (query) TO STDOUT on a streaming gateway")
        })?;
    let mut depth = 1usize;
    let close = tokens
        .find(|t| {
            if t.is_punct(text, b'(') {
                depth += 1;
            } else if t.is_punct(text, b')') {
                depth -= 1;
            }
            depth == 0
        })
        .ok_or_else(|| unsupported("syntax error: unbalanced parentheses in COPY"))?;
    let tail: Vec<Token> = tokens.collect();
    let tail = words(text, &tail);
    if tail.first().map(String::as_str) != Some("to")
        || tail.get(1).map(String::as_str) != Some("stdout")
    {
        return Err(unsupported("COPY supports only TO STDOUT"));
    }
    let options = &tail[2..];
    let has = |w: &str| options.iter().any(|o| o == w);
    if has("binary") {
        return Err(unsupported("COPY BINARY is not supported; use text or CSV"));
    }
    let header = has("header")
        && !options
            .windows(2)
            .any(|w| w[0] == "header" && (w[1] == "false" || w[1] == "off"));
    Ok(CopyOut {
        query: text[open.end..close.start].to_string(),
        query_offset: text[..open.end].chars().count() as u32,
        csv: has("csv"),
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_and_session_statements() {
        assert!(matches!(
            classify("BEGIN READ ONLY"),
            Statement::Begin { tag: "BEGIN" }
        ));
        assert!(matches!(
            classify("rollback to savepoint a"),
            Statement::RollbackToSavepoint
        ));
        assert!(matches!(classify("SHOW STREAMS"), Statement::Query));
        assert!(
            matches!(classify("show transaction isolation level"), Statement::Show(n) if n == "transaction_isolation")
        );
        assert!(matches!(classify("SET"), Statement::Invalid(_)));
        match classify("SET SESSION search_path TO 'a', \"B\", c") {
            Statement::Set(Set::Value { name, value }) => {
                assert_eq!(name, "search_path");
                assert_eq!(value, "a, B, c");
            }
            other => panic!("{other:?}"),
        }
        match classify("SET extra_float_digits = -3") {
            Statement::Set(Set::Value { value, .. }) => assert_eq!(value, "-3"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            Statement::Set(Set::Ignored)
        ));
        assert!(matches!(
            classify("deallocate all"),
            Statement::Deallocate {
                name: None,
                tag: "DEALLOCATE ALL"
            }
        ));
    }

    #[test]
    fn local_selects() {
        match classify("SELECT 1, 'x' AS \"Y\", version() as v, current_user") {
            Statement::LocalSelect(items) => {
                assert_eq!(items.len(), 4);
                assert_eq!(items[0].value, LocalValue::Int(1));
                assert_eq!(items[1].alias.as_deref(), Some("Y"));
                assert_eq!(items[2].value, LocalValue::Version);
                assert_eq!(items[3].value, LocalValue::User("current_user"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify("SELECT 1 FROM t"), Statement::Query));
        assert!(matches!(classify("SELECT count(*)"), Statement::Query));
        assert!(matches!(classify("SELECT"), Statement::Query));
    }

    #[test]
    fn cursors() {
        match classify("DECLARE c CURSOR WITH HOLD FOR SELECT 'for' FROM t") {
            Statement::Declare(d) => {
                assert_eq!(d.name, "c");
                assert!(d.holdable);
                assert_eq!(d.query, "SELECT 'for' FROM t");
                assert_eq!(d.query_offset, 31);
            }
            other => panic!("{other:?}"),
        }
        match classify("FETCH FORWARD 10 FROM c") {
            Statement::Fetch(f) => assert_eq!(
                (f.count, f.moving, f.cursor.as_str()),
                (Some(10), false, "c")
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("FETCH PRIOR c"),
            Statement::Invalid(GatewayError::Unsupported(_))
        ));
        // Found by the mutation test below: this once sliced words[2..1].
        assert!(matches!(classify("DECLARE cursor"), Statement::Invalid(_)));
        assert!(matches!(
            classify("DECLARE cursor CURSOR FOR SELECT 1"),
            Statement::Declare(d) if d.name == "cursor"
        ));
    }

    #[test]
    fn copy_forms() {
        match classify("COPY (SELECT 1) TO STDOUT WITH (FORMAT csv, HEADER)") {
            Statement::Copy(c) => {
                assert_eq!(c.query, "SELECT 1");
                assert!(c.csv && c.header);
                assert_eq!(c.query_offset, 6);
            }
            other => panic!("{other:?}"),
        }
        match classify("copy (select ')') to stdout") {
            Statement::Copy(c) => assert_eq!((c.query.as_str(), c.csv), ("select ')'", false)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("COPY t FROM STDIN"),
            Statement::Invalid(_)
        ));
        assert!(matches!(
            classify("COPY (SELECT 1) TO STDOUT BINARY"),
            Statement::Invalid(_)
        ));
    }

    #[test]
    fn hostile_statements_classify_without_panicking() {
        let seeds: &[&[u8]] = &[
            b"SELECT 1, 'a' AS \"b\"",
            b"DECLARE c CURSOR WITH HOLD FOR SELECT 'for' FROM t",
            b"COPY (SELECT ')' FROM t) TO STDOUT WITH (FORMAT csv, HEADER)",
            b"SET SESSION search_path TO 'a', \"B\", c",
            b"FETCH FORWARD 10 FROM c; MOVE 2 IN c",
            b"BEGIN; SHOW transaction isolation level; ROLLBACK TO s",
            b"select $q$ ; $q$, E'\\'' /* /* */ */ -- x",
        ];
        for input in crate::mutate::mutations(seeds, 20_000) {
            let text = String::from_utf8_lossy(&input);
            let pieces = crate::sql::split(&text);
            let mut previous = None;
            for piece in &pieces {
                // Pieces are substrings of the input, in order.
                if !piece.text.is_empty() {
                    let start = piece.text.as_ptr() as usize - text.as_ptr() as usize;
                    assert!(text[start..].starts_with(piece.text));
                }
                assert!(previous.is_none_or(|p| p <= piece.offset));
                previous = Some(piece.offset);
                if let Ok(statement) = piece.checked() {
                    let classified = classify(statement);
                    if let Statement::Invalid(e) = classified {
                        assert!(["42601", "0A000"].contains(&e.sqlstate()), "{e:?}");
                    }
                }
            }
        }
    }
}
