//! The one SQL scanner: PostgreSQL's lexical rules for what can hide a `;`
//! or a keyword (quotes, E-strings, dollar quotes, nested comments), and
//! nothing more. It yields tokens lazily as byte ranges of the input, so
//! splitting and classifying a statement allocates nothing per token.
//! (sqlparser's tokenizer would allocate a token vector the size of the
//! statement and rejects some Velostream syntax; we only need to find
//! statement boundaries and the leading keywords.)

/// What a token is; its text is `&input[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An unquoted identifier, keyword or number (`select`, `x1`, `42`).
    Word,
    /// `"..."` (with `""` for a quote inside).
    QuotedIdent,
    /// `'...'`, `E'...'` or `$tag$...$tag$`.
    String,
    /// Any other single character (`;`, `(`, `,`, `=`, `.`, `$`, ...).
    Punct,
}

/// One token, as byte offsets into the input (no copy of its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text(self, input: &str) -> &str {
        &input[self.start..self.end]
    }

    pub fn is_punct(self, input: &str, c: u8) -> bool {
        self.kind == Kind::Punct && input.as_bytes()[self.start] == c
    }

    /// A word equal to `keyword`, ignoring case.
    pub fn is_word(self, input: &str, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text(input).eq_ignore_ascii_case(keyword)
    }

    /// The value of a string literal or the name in a quoted identifier,
    /// with doubled quotes (and an E-string's backslash escapes) undone.
    pub fn unquoted(self, input: &str) -> String {
        let text = self.text(input);
        match self.kind {
            Kind::QuotedIdent => inner(text, '"').replace("\"\"", "\""),
            Kind::String if text.starts_with('$') => {
                let tag_end = text[1..].find('$').map_or(text.len(), |i| i + 2);
                let tag = &text[..tag_end];
                text[tag_end..]
                    .strip_suffix(tag)
                    .unwrap_or(&text[tag_end..])
                    .to_string()
            }
            Kind::String if text.starts_with(['e', 'E']) => {
                let body = inner(&text[1..], '\'').replace("''", "'");
                let mut out = String::with_capacity(body.len());
                let mut chars = body.chars();
                while let Some(c) = chars.next() {
                    if c != '\\' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some(other) => out.push(other),
                        None => {}
                    }
                }
                out
            }
            Kind::String => inner(text, '\'').replace("''", "'"),
            Kind::Word | Kind::Punct => text.to_string(),
        }
    }
}

/// `text` without its opening quote and, when present, its closing one.
fn inner(text: &str, quote: char) -> &str {
    let body = text.strip_prefix(quote).unwrap_or(text);
    if body.ends_with(quote) {
        &body[..body.len() - 1]
    } else {
        body
    }
}

/// Tokens of `input`, skipping whitespace and comments. Unterminated
/// quotes and comments run to the end of the input: the engine reports
/// the syntax error with its position.
pub struct Lexer<'a> {
    input: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(input: &'a str) -> Self {
        Self {
            input,
            bytes: input.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.at + offset).copied()
    }

    /// Skips whitespace and comments (block comments nest, as in
    /// PostgreSQL).
    fn skip_trivia(&mut self) {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_ascii_whitespace() => self.at += 1,
                (Some(b'-'), Some(b'-')) => {
                    self.at = memchr(b'\n', &self.bytes[self.at..])
                        .map_or(self.bytes.len(), |i| self.at + i);
                }
                (Some(b'/'), Some(b'*')) => {
                    let mut depth = 0usize;
                    while self.at < self.bytes.len() {
                        match (self.peek(0), self.peek(1)) {
                            (Some(b'/'), Some(b'*')) => {
                                depth += 1;
                                self.at += 2;
                            }
                            (Some(b'*'), Some(b'/')) => {
                                depth -= 1;
                                self.at += 2;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => self.at += 1,
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// Past a quoted run starting at `self.at` (the opening quote), where
    /// a doubled quote stands for itself; `backslash` also skips `\x`.
    fn skip_quoted(&mut self, quote: u8, backslash: bool) {
        self.at += 1;
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if backslash && c == b'\\' {
                self.at = (self.at + 1).min(self.bytes.len());
            } else if c == quote {
                if self.peek(0) == Some(quote) {
                    self.at += 1;
                } else {
                    return;
                }
            }
        }
    }

    /// `$tag$` at `self.at`: its length, if it opens a dollar quote.
    fn dollar_tag(&self) -> Option<usize> {
        let rest = &self.bytes[self.at + 1..];
        let len = rest
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80))?;
        let starts_with_digit = rest.first().is_some_and(u8::is_ascii_digit);
        (rest[len] == b'$' && !starts_with_digit).then_some(len + 2)
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&c| c == needle)
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        self.skip_trivia();
        let start = self.at;
        let c = self.peek(0)?;
        let kind = match c {
            b'\'' => {
                self.skip_quoted(b'\'', false);
                Kind::String
            }
            b'e' | b'E' if self.peek(1) == Some(b'\'') => {
                self.at += 1;
                self.skip_quoted(b'\'', true);
                Kind::String
            }
            b'"' => {
                self.skip_quoted(b'"', false);
                Kind::QuotedIdent
            }
            b'$' => match self.dollar_tag() {
                Some(len) => {
                    let tag = &self.input[start..start + len];
                    self.at = match self.input[start + len..].find(tag) {
                        Some(i) => start + len + i + len,
                        None => self.bytes.len(),
                    };
                    Kind::String
                }
                None => {
                    self.at += 1;
                    Kind::Punct
                }
            },
            c if is_word_byte(c) => {
                // `$` continues an identifier (`a$b`), as in PostgreSQL.
                while self.peek(0).is_some_and(|c| is_word_byte(c) || c == b'$') {
                    self.at += 1;
                }
                Kind::Word
            }
            _ => {
                self.at += 1;
                Kind::Punct
            }
        };
        Some(Token {
            kind,
            start,
            end: self.at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        Lexer::new(sql).map(|t| t.text(sql)).collect()
    }

    #[test]
    fn quotes_and_comments_hide_their_contents() {
        assert_eq!(
            texts("SELECT 'a;b', \"x\"\"y\" -- c;\n/* a /* nested */ ; */ $q$ ; $q$;"),
            vec!["SELECT", "'a;b'", ",", "\"x\"\"y\"", "$q$ ; $q$", ";"]
        );
        assert_eq!(texts("E'it\\'s';"), vec!["E'it\\'s'", ";"]);
        assert_eq!(texts("$1 + a$b"), vec!["$", "1", "+", "a$b"]);
    }

    #[test]
    fn unterminated_runs_to_the_end() {
        assert_eq!(texts("select 'abc"), vec!["select", "'abc"]);
        assert_eq!(texts("select /* x"), vec!["select"]);
        assert_eq!(texts("select $a$ x"), vec!["select", "$a$ x"]);
    }

    #[test]
    fn unquoting() {
        let sql = "'it''s' \"A\"\"b\" E'a\\nb' $$x$$";
        let values: Vec<String> = Lexer::new(sql).map(|t| t.unquoted(sql)).collect();
        assert_eq!(values, vec!["it's", "A\"b", "a\nb", "x"]);
    }
}
