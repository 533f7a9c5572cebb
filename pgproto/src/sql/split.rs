//! A simple Query message → its statements, each with its character offset
//! in the message (error positions count from the message's start).

use super::lexer::{Lexer, Token};
use crate::error::GatewayError;

/// One statement: its text without leading or trailing comments and
/// whitespace, the character offset of that text in the message, and how
/// deeply its parentheses nest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub offset: u32,
    pub depth: u32,
}

/// Parentheses nested deeper than this make a statement too complex
/// (54001) before any parser recurses into it.
pub const MAX_DEPTH: u32 = 1_000;

impl Piece<'_> {
    /// Whether `;` follows the statement in `message`, the text it was
    /// split from: a statement that ends too soon is then, as PostgreSQL
    /// reports it, a syntax error at or near ";" rather than at the end of
    /// the input.
    pub fn ends_at_semicolon(&self, message: &str) -> bool {
        let start = self.text.as_ptr() as usize - message.as_ptr() as usize;
        message
            .get(start + self.text.len()..)
            .is_some_and(|rest| rest.trim_start().starts_with(';'))
    }

    /// The statement, unless it nests too deeply to be parsed safely.
    pub fn checked(&self) -> Result<&str, GatewayError> {
        if self.depth > MAX_DEPTH {
            return Err(GatewayError::StatementTooComplex(format!(
                "statement too complex: parentheses nest {} deep (limit {MAX_DEPTH})",
                self.depth
            )));
        }
        Ok(self.text)
    }
}

/// Counts characters up to a byte position, moving forward only, so a
/// whole message costs one pass however many statements it holds.
struct CharCounter<'a> {
    input: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharCounter<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            input,
            byte: 0,
            chars: 0,
        }
    }

    fn at(&mut self, byte: usize) -> u32 {
        self.chars += self.input[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars as u32
    }
}

/// The tokens of one statement so far: where it starts and ends, and how
/// deep its parentheses went.
#[derive(Default)]
struct Extent {
    first: Option<Token>,
    last: Option<Token>,
    depth: i64,
    deepest: i64,
}

impl Extent {
    /// Takes a token; `;` tokens do not extend the statement.
    fn add(&mut self, sql: &str, token: Token) {
        if token.is_punct(sql, b'(') {
            self.depth += 1;
            self.deepest = self.deepest.max(self.depth);
        } else if token.is_punct(sql, b')') {
            self.depth -= 1;
        }
        self.first.get_or_insert(token);
        if !token.is_punct(sql, b';') {
            self.last = Some(token);
        }
    }

    fn piece<'a>(&self, sql: &'a str, counter: &mut CharCounter<'_>) -> Option<Piece<'a>> {
        let (first, last) = (self.first?, self.last?);
        Some(Piece {
            text: &sql[first.start..last.end],
            offset: counter.at(first.start),
            depth: u32::try_from(self.deepest).unwrap_or(u32::MAX),
        })
    }
}

const EMPTY: Piece<'static> = Piece {
    text: "",
    offset: 0,
    depth: 0,
};

/// Splits on `;` outside quotes, comments and parentheses. Statements
/// with no tokens (`;;`, `-- ping`) are dropped unless nothing else is
/// there, when the message is one empty statement (EmptyQueryResponse).
pub fn split(sql: &str) -> Vec<Piece<'_>> {
    let mut counter = CharCounter::new(sql);
    let mut pieces = Vec::new();
    let mut extent = Extent::default();
    for token in Lexer::new(sql) {
        if token.is_punct(sql, b';') && extent.depth <= 0 {
            pieces.extend(extent.piece(sql, &mut counter));
            extent = Extent::default();
            continue;
        }
        extent.add(sql, token);
    }
    pieces.extend(extent.piece(sql, &mut counter));
    if pieces.is_empty() {
        pieces.push(EMPTY);
    }
    pieces
}

/// The statement of a Parse message: from its first token to its last,
/// trailing semicolons dropped (drivers send `SELECT 1;`).
pub fn single(sql: &str) -> Piece<'_> {
    let mut extent = Extent::default();
    for token in Lexer::new(sql) {
        extent.add(sql, token);
    }
    let mut counter = CharCounter::new(sql);
    extent.piece(sql, &mut counter).unwrap_or(EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_outside_quotes_and_comments() {
        let p = split("SELECT ';'; -- x;\nSELECT 2; /* ; */");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].text, "SELECT ';'");
        assert_eq!(p[1].text, "SELECT 2");
        assert_eq!(p[1].offset, 18);
        assert_eq!(split(";"), vec![EMPTY]);
        assert_eq!(split("-- ping")[0].text, "");
        assert_eq!(split("select $$a;b$$; select 1").len(), 2);
        assert_eq!(split("create rule r as (a; b)").len(), 1);
    }

    #[test]
    fn nesting_depth_is_measured() {
        let deep = format!(
            "select {}1{}; select (2)",
            "(".repeat(1001),
            ")".repeat(1001)
        );
        let p = split(&deep);
        assert_eq!((p[0].depth, p[1].depth), (1001, 1));
        assert_eq!(p[0].checked().unwrap_err().sqlstate(), "54001");
        assert!(p[1].checked().is_ok());
        assert_eq!(single("select ((1))").depth, 2);
    }

    #[test]
    fn offsets_count_characters() {
        let p = split("select 'é'; select x");
        assert_eq!(p[1].offset, 12);
        assert_eq!(single("/* c */ select 1;;").text, "select 1");
        assert_eq!(single("/* c */ select 1;").offset, 8);
    }
}
