//! A simple Query message → its statements, each with its character offset
//! in the message (error positions count from the message's start).

use super::lexer::{Kind, Lexer, Token};

/// One statement: its text without leading or trailing comments and
/// whitespace, and the character offset of that text in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub offset: u32,
}

/// Counts characters up to a byte position, moving forward only, so a
/// whole message costs one pass however many statements it holds.
struct CharCounter<'a> {
    input: &'a str,
    byte: usize,
    chars: usize,
}

impl CharCounter<'_> {
    fn at(&mut self, byte: usize) -> u32 {
        self.chars += self.input[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars as u32
    }
}

/// Splits on `;` outside quotes, comments and parentheses. Statements
/// with no tokens (`;;`, `-- ping`) are dropped unless nothing else is
/// there, when the message is one empty statement (EmptyQueryResponse).
pub fn split<'a>(sql: &'a str) -> Vec<Piece<'a>> {
    let mut counter = CharCounter {
        input: sql,
        byte: 0,
        chars: 0,
    };
    let mut pieces = Vec::new();
    let mut first: Option<Token> = None;
    let mut last: Option<Token> = None;
    let mut depth = 0i64;
    let mut close =
        |first: &mut Option<Token>, last: Option<Token>, pieces: &mut Vec<Piece<'a>>| {
            if let (Some(f), Some(l)) = (first.take(), last) {
                pieces.push(Piece {
                    text: &sql[f.start..l.end],
                    offset: counter.at(f.start),
                });
            }
        };
    for token in Lexer::new(sql) {
        if token.kind == Kind::Punct {
            match sql.as_bytes()[token.start] {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b';' if depth <= 0 => {
                    close(&mut first, last, &mut pieces);
                    last = None;
                    continue;
                }
                _ => {}
            }
        }
        first.get_or_insert(token);
        last = Some(token);
    }
    close(&mut first, last, &mut pieces);
    if pieces.is_empty() {
        pieces.push(Piece {
            text: "",
            offset: 0,
        });
    }
    pieces
}

/// The statement of a Parse message: from its first token to its last,
/// trailing semicolons dropped (drivers send `SELECT 1;`).
pub fn single(sql: &str) -> Piece<'_> {
    let mut first: Option<Token> = None;
    let mut last: Option<Token> = None;
    for token in Lexer::new(sql) {
        first.get_or_insert(token);
        if !token.is_punct(sql, b';') {
            last = Some(token);
        }
    }
    match (first, last) {
        (Some(f), Some(l)) => Piece {
            text: &sql[f.start..l.end],
            offset: sql[..f.start].chars().count() as u32,
        },
        _ => Piece {
            text: "",
            offset: 0,
        },
    }
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
        assert_eq!(
            split(";"),
            vec![Piece {
                text: "",
                offset: 0
            }]
        );
        assert_eq!(split("-- ping")[0].text, "");
        assert_eq!(split("select $$a;b$$; select 1").len(), 2);
        assert_eq!(split("create rule r as (a; b)").len(), 1);
    }

    #[test]
    fn offsets_count_characters() {
        let p = split("select 'é'; select x");
        assert_eq!(p[1].offset, 12);
        assert_eq!(single("/* c */ select 1;;").text, "select 1");
        assert_eq!(single("/* c */ select 1;").offset, 8);
    }
}
