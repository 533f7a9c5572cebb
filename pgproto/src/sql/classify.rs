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
    /// `SET ROLE name` or `SET SESSION AUTHORIZATION name`: a session keeps
    /// its login user, so only that user is accepted.
    Role(String),
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
    if let Err(e) = check_utility_grammar(&keyword, text) {
        return Statement::Invalid(e);
    }
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

/// Utility statements the gateway answers itself, checked against
/// PostgreSQL's grammar for them: what follows a complete statement is a
/// syntax error at that token, as PostgreSQL reports it (`BEGIN garbage`
/// used to succeed).
fn check_utility_grammar(keyword: &str, text: &str) -> Result<(), GatewayError> {
    if !matches!(
        keyword,
        "begin"
            | "start"
            | "commit"
            | "end"
            | "rollback"
            | "abort"
            | "discard"
            | "listen"
            | "unlisten"
            | "reset"
            | "show"
            | "close"
            | "deallocate"
    ) {
        return Ok(());
    }
    let tokens: Vec<Token> = Lexer::new(text).collect();
    let (tokens, semicolon) = final_semicolon(text, &tokens);
    let mut at = Grammar {
        text,
        tokens,
        semicolon,
        i: 1,
    };
    match keyword {
        "begin" => {
            at.any(&["work", "transaction"]);
            at.transaction_modes();
        }
        "start" => {
            at.require(&["transaction"])?;
            at.transaction_modes();
        }
        "commit" | "end" | "rollback" | "abort" => {
            at.any(&["work", "transaction"]);
            if matches!(keyword, "rollback" | "abort") && at.peek_is("to") {
                return Ok(()); // ROLLBACK TO SAVEPOINT: checked where it runs
            }
            if at.any(&["and"]) {
                at.any(&["no"]);
                at.require(&["chain"])?;
            }
        }
        "discard" => at.require(&["all", "plans", "sequences", "temp", "temporary"])?,
        "listen" => at.name()?,
        "unlisten" => {
            if !at.punct(b'*') {
                at.name()?;
            }
        }
        "close" => {
            if !at.any(&["all"]) {
                at.name()?;
            }
        }
        "deallocate" => {
            at.any(&["prepare"]);
            if !at.any(&["all"]) {
                at.name()?;
            }
        }
        _ => {
            // SHOW and RESET: a (dotted) parameter name or a few phrases.
            let show = keyword == "show";
            if at.any(&["all", "role"]) {
            } else if at.any(&["time"]) {
                at.require(&["zone"])?;
            } else if at.any(&["session"]) {
                at.require(&["authorization"])?;
            } else if show && at.any(&["transaction"]) {
                at.require(&["isolation"])?;
                at.require(&["level"])?;
            } else {
                at.name()?;
                while at.punct(b'.') {
                    at.name()?;
                }
            }
        }
    }
    at.end()
}

/// A cursor over a statement's tokens for `check_utility_grammar`.
struct Grammar<'a> {
    text: &'a str,
    tokens: &'a [Token],
    /// The statement's final `;`, where PostgreSQL reports a statement
    /// that ends too soon.
    semicolon: Option<Token>,
    i: usize,
}

impl Grammar<'_> {
    fn peek_is(&self, word: &str) -> bool {
        self.tokens
            .get(self.i)
            .is_some_and(|t| t.is_word(self.text, word))
    }

    /// Takes the next token if it is one of `words`.
    fn any(&mut self, words: &[&str]) -> bool {
        let found = words.iter().any(|w| self.peek_is(w));
        self.i += usize::from(found);
        found
    }

    fn require(&mut self, words: &[&str]) -> Result<(), GatewayError> {
        if self.any(words) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn punct(&mut self, c: u8) -> bool {
        let found = self
            .tokens
            .get(self.i)
            .is_some_and(|t| t.is_punct(self.text, c));
        self.i += usize::from(found);
        found
    }

    /// An identifier: a word or a quoted name.
    fn name(&mut self) -> Result<(), GatewayError> {
        match self.tokens.get(self.i) {
            Some(t) if matches!(t.kind, Kind::Word | Kind::QuotedIdent) => {
                self.i += 1;
                Ok(())
            }
            _ => Err(self.error()),
        }
    }

    /// `[transaction_mode [, ...]]` of BEGIN and START TRANSACTION.
    fn transaction_modes(&mut self) {
        loop {
            let before = self.i;
            if self.any(&["isolation"]) {
                if !self.any(&["level"]) {
                    return;
                }
                if self.any(&["read"]) {
                    self.any(&["committed", "uncommitted"]);
                } else if self.any(&["repeatable"]) {
                    self.any(&["read"]);
                } else {
                    self.any(&["serializable"]);
                }
            } else if self.any(&["read"]) {
                self.any(&["write", "only"]);
            } else {
                // [NOT] DEFERRABLE
                self.any(&["not"]);
                self.any(&["deferrable"]);
            }
            if self.i == before || !self.punct(b',') && !self.peek_mode() {
                return;
            }
        }
    }

    /// Whether the next token starts another transaction mode (they may
    /// follow each other without commas).
    fn peek_mode(&self) -> bool {
        ["isolation", "read", "not", "deferrable"]
            .iter()
            .any(|w| self.peek_is(w))
    }

    /// Nothing may follow.
    fn end(&self) -> Result<(), GatewayError> {
        if self.i < self.tokens.len() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    fn error(&self) -> GatewayError {
        syntax_error_at(
            self.text,
            self.tokens.get(self.i).copied().or(self.semicolon),
        )
    }
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
            // A bare SHOW never gets here: check_utility_grammar refuses it.
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
        // Sessions keep their login user; resetting to it is a no-op (BI
        // tools reset impersonation with it).
        ["role", "none"] | ["authorization", "default"] => return Ok(Statement::Set(Set::Ignored)),
        ["role" | "authorization", role] => {
            return Ok(Statement::Set(Set::Role(
                role.trim_start_matches('\'').to_string(),
            )))
        }
        ["role", ..] | ["authorization", ..] => {
            return Err(GatewayError::Syntax(format!(
                "syntax error at or near \"{}\"",
                rest.get(2).copied().unwrap_or_default()
            )))
        }
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
    let (tail, semicolon) = final_semicolon(text, &tail);
    match tail.first() {
        Some(t) if t.is_word(text, "to") || t.is_word(text, "from") => {
            if !(t.is_word(text, "to") && tail.get(1).is_some_and(|t| t.is_word(text, "stdout"))) {
                return Err(unsupported("COPY supports only TO STDOUT"));
            }
        }
        other => return Err(syntax_error_at(text, other.copied().or(semicolon))),
    }
    let (csv, header) = copy_options(text, &tail[2..], semicolon)?;
    Ok(CopyOut {
        query: text[open.end..close.start].to_string(),
        query_offset: text[..open.end].chars().count() as u32,
        csv,
        header,
    })
}

/// `tokens` without a final `;`, and that `;`.
fn final_semicolon<'t>(text: &str, tokens: &'t [Token]) -> (&'t [Token], Option<Token>) {
    match tokens.split_last() {
        Some((last, rest)) if last.is_punct(text, b';') => (rest, Some(*last)),
        _ => (tokens, None),
    }
}

/// `syntax error at or near "token"` (or at end of input), positioned as
/// PostgreSQL does: at the token's first character.
fn syntax_error_at(text: &str, token: Option<Token>) -> GatewayError {
    match token {
        Some(t) => GatewayError::SyntaxAt {
            message: format!("syntax error at or near \"{}\"", t.text(text)),
            position: text[..t.start].chars().count() as u32 + 1,
        },
        None => GatewayError::SyntaxAt {
            message: crate::error::END_OF_INPUT.into(),
            position: text.trim_end().chars().count() as u32 + 1,
        },
    }
}

/// The options after `TO STDOUT`, in either of PostgreSQL's grammars:
/// `[WITH] (option [value] [, ...])` or the older `[WITH] [BINARY] [CSV
/// [HEADER] ...]`. Returns (csv, header). Options that would change the
/// output in ways the gateway does not implement are refused, not ignored.
fn copy_options(
    text: &str,
    tokens: &[Token],
    semicolon: Option<Token>,
) -> Result<(bool, bool), GatewayError> {
    let tokens = match tokens.first() {
        Some(t) if t.is_word(text, "with") => &tokens[1..],
        _ => tokens,
    };
    let not_implemented = |option: &str| {
        GatewayError::Unsupported(format!(
            "COPY option {} is not supported; the gateway writes text or CSV with PostgreSQL's defaults",
            option.to_uppercase()
        ))
    };
    let (mut csv, mut header) = (false, false);
    if tokens.first().is_some_and(|t| t.is_punct(text, b'(')) {
        // New grammar: a parenthesized list, then nothing.
        let mut i = 1;
        loop {
            let name = match tokens.get(i) {
                Some(t) if t.kind == Kind::Word => t,
                other => return Err(syntax_error_at(text, other.copied().or(semicolon))),
            };
            let value_end = tokens[i + 1..]
                .iter()
                .position(|t| t.is_punct(text, b',') || t.is_punct(text, b')'))
                .map(|n| i + 1 + n)
                .ok_or_else(|| syntax_error_at(text, semicolon))?;
            let value = tokens[i + 1..value_end]
                .first()
                .map(|t| t.unquoted(text).to_lowercase());
            match name.text(text).to_lowercase().as_str() {
                "format" => match value.as_deref() {
                    Some("text") => csv = false,
                    Some("csv") => csv = true,
                    Some("binary") => {
                        return Err(GatewayError::Unsupported(
                            "COPY BINARY is not supported; use text or CSV".into(),
                        ))
                    }
                    _ => {
                        return Err(GatewayError::InvalidValue(format!(
                            "COPY format \"{}\" not recognized",
                            value.unwrap_or_default()
                        )))
                    }
                },
                "header" => {
                    header = match value.as_deref() {
                        None | Some("true" | "on" | "1") => true,
                        Some("false" | "off" | "0") => false,
                        Some(other) => {
                            return Err(GatewayError::InvalidValue(format!(
                                "header requires a Boolean value or \"match\", not \"{other}\""
                            )))
                        }
                    }
                }
                known @ ("delimiter" | "null" | "default" | "quote" | "escape" | "force_quote"
                | "force_not_null" | "force_null" | "encoding" | "freeze" | "on_error"
                | "log_verbosity") => return Err(not_implemented(known)),
                other => {
                    return Err(GatewayError::SyntaxAt {
                        message: format!("option \"{other}\" not recognized"),
                        position: text[..name.start].chars().count() as u32 + 1,
                    })
                }
            }
            i = value_end + 1;
            if tokens[value_end].is_punct(text, b')') {
                break;
            }
        }
        if let Some(&extra) = tokens.get(i) {
            return Err(syntax_error_at(text, Some(extra)));
        }
        return Ok((csv, header));
    }
    // Old grammar: keywords in any order.
    for &t in tokens {
        let word = if t.kind == Kind::Word {
            t.text(text).to_lowercase()
        } else {
            return Err(syntax_error_at(text, Some(t)));
        };
        match word.as_str() {
            "csv" => csv = true,
            "header" => header = true,
            "binary" => {
                return Err(GatewayError::Unsupported(
                    "COPY BINARY is not supported; use text or CSV".into(),
                ))
            }
            known @ ("delimiter" | "null" | "quote" | "escape" | "force" | "encoding"
            | "freeze") => return Err(not_implemented(known)),
            _ => return Err(syntax_error_at(text, Some(t))),
        }
    }
    Ok((csv, header))
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

    /// The utility statements the gateway answers follow PostgreSQL's
    /// grammar: complete forms pass, and what follows one is a syntax error
    /// at that token (PostgreSQL's message and position).
    #[test]
    fn utility_statements_refuse_trailing_words() {
        for sql in [
            "BEGIN",
            "BEGIN WORK",
            "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE NOT DEFERRABLE;",
            "START TRANSACTION READ ONLY",
            "COMMIT",
            "COMMIT AND NO CHAIN",
            "END TRANSACTION",
            "ROLLBACK WORK",
            "ROLLBACK TO SAVEPOINT s",
            "ABORT",
            "DISCARD ALL",
            "LISTEN c",
            "UNLISTEN *",
            "RESET ALL",
            "RESET search_path",
            "RESET velostream.offset_reset",
            "RESET TIME ZONE",
            "SHOW TRANSACTION ISOLATION LEVEL",
            "SHOW \"TimeZone\"",
            "SHOW JOBS",
            "CLOSE ALL",
            "CLOSE c",
            "DEALLOCATE PREPARE s",
            "DEALLOCATE ALL",
        ] {
            assert!(!matches!(classify(sql), Statement::Invalid(_)), "{sql}");
        }
        for (sql, near, position) in [
            ("BEGIN garbage", Some("garbage"), 7),
            ("COMMIT garbage", Some("garbage"), 8),
            ("ROLLBACK garbage", Some("garbage"), 10),
            ("START garbage", Some("garbage"), 7),
            ("COMMIT AND", None, 11),
            ("COMMIT AND;", Some(";"), 11),
            ("DISCARD garbage", Some("garbage"), 9),
            ("LISTEN a b", Some("b"), 10),
            ("UNLISTEN", None, 9),
            ("RESET a b", Some("b"), 9),
            ("SHOW a b", Some("b"), 8),
            ("SHOW TIME", None, 10),
            ("CLOSE a b", Some("b"), 9),
            ("DEALLOCATE a b", Some("b"), 14),
        ] {
            let message = match near {
                Some(token) => format!("syntax error at or near \"{token}\""),
                None => "syntax error at end of input".to_string(),
            };
            match classify(sql) {
                Statement::Invalid(GatewayError::SyntaxAt {
                    message: m,
                    position: p,
                }) => {
                    assert_eq!((m, p), (message, position), "{sql}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn set_role_none_is_accepted_and_other_roles_are_not() {
        for sql in [
            "SET ROLE NONE",
            "SET SESSION ROLE NONE",
            "SET SESSION AUTHORIZATION DEFAULT",
        ] {
            assert!(
                matches!(classify(sql), Statement::Set(Set::Ignored)),
                "{sql}"
            );
        }
        for sql in [
            "SET ROLE bob",
            "SET SESSION AUTHORIZATION bob",
            "SET ROLE 'bob'",
            "SET ROLE \"bob\"",
        ] {
            assert!(
                matches!(classify(sql), Statement::Set(Set::Role(r)) if r == "bob"),
                "{sql}"
            );
        }
    }

    /// What PostgreSQL accepts after `TO STDOUT`, and its errors for what
    /// it does not (the gateway used to ignore whatever followed).
    #[test]
    fn copy_options_are_parsed_as_postgresql_parses_them() {
        let options = |sql: &str| match classify(sql) {
            Statement::Copy(c) => Ok((c.csv, c.header)),
            Statement::Invalid(e) => Err(e),
            other => panic!("{other:?}"),
        };
        let ok = [
            ("COPY (SELECT 1) TO STDOUT", (false, false)),
            ("COPY (SELECT 1) TO STDOUT;", (false, false)),
            ("COPY (SELECT 1) TO STDOUT CSV", (true, false)),
            ("COPY (SELECT 1) TO STDOUT WITH CSV HEADER", (true, true)),
            (
                "COPY (SELECT 1) TO STDOUT (FORMAT csv, HEADER false)",
                (true, false),
            ),
            (
                "COPY (SELECT 1) TO STDOUT WITH (FORMAT 'text', HEADER on)",
                (false, true),
            ),
        ];
        for (sql, expected) in ok {
            assert_eq!(options(sql).unwrap(), expected, "{sql}");
        }
        let syntax = [
            // PostgreSQL: syntax error at or near "garbage", position 27.
            (
                "COPY (SELECT 1) TO STDOUT garbage words",
                "syntax error at or near \"garbage\"",
                27,
            ),
            (
                "COPY (SELECT 1) TO STDOUT (FORMAT csv) extra",
                "syntax error at or near \"extra\"",
                40,
            ),
            (
                "COPY (SELECT 1) TO STDOUT (FORMAT csv",
                "syntax error at end of input",
                38,
            ),
            (
                "COPY (SELECT 1) TO STDOUT (bogus)",
                "option \"bogus\" not recognized",
                28,
            ),
            (
                "COPY (SELECT 1) garbage",
                "syntax error at or near \"garbage\"",
                17,
            ),
        ];
        for (sql, message, position) in syntax {
            match options(sql) {
                Err(GatewayError::SyntaxAt {
                    message: m,
                    position: p,
                }) => {
                    assert_eq!((m.as_str(), p), (message, position), "{sql}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        for sql in [
            "COPY (SELECT 1) TO STDOUT (DELIMITER '|')",
            "COPY (SELECT 1) TO STDOUT WITH CSV QUOTE '\"'",
            "COPY (SELECT 1) TO STDOUT (FORMAT binary)",
            "COPY (SELECT 1) TO '/tmp/x'",
        ] {
            assert!(
                matches!(options(sql), Err(e) if e.sqlstate() == "0A000"),
                "{sql}"
            );
        }
        assert!(matches!(
            options("COPY (SELECT 1) TO STDOUT (FORMAT xml)"),
            Err(GatewayError::InvalidValue(_))
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
                        // 22023: a COPY option's value, as PostgreSQL.
                        assert!(["42601", "0A000", "22023"].contains(&e.sqlstate()), "{e:?}");
                    }
                }
            }
        }
    }
}
