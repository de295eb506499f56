//! The `.fir` lexer: turns source text into tokens one at a time, each with its 1-based
//! `line:column` position (columns count chars, not bytes). Control characters other
//! than tab, CR and LF are rejected wherever they appear, including in strings and
//! comments; strings are decoded here, numbers are kept as text for the parser to
//! convert with overflow checks.

use super::ParseError;

/// A 1-based source position; `column` counts chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// An error at this position.
    pub fn error(self, message: impl Into<String>) -> ParseError {
        ParseError { line: self.line, column: self.column, message: message.into() }
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What follows a `%`: an op-result number (`%3`) or a name (`%x`, `%"a b"`). The two
/// never collide: a name made of digits is always written quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ValueName {
    Number(String),
    Name(String),
}

impl std::fmt::Display for ValueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueName::Number(n) => write!(f, "%{n}"),
            ValueName::Name(s) => write!(f, "%{}", crate::graph::quote_name(s)),
        }
    }
}

/// A token. Numbers are unsigned here: a leading `-` is its own token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'a> {
    /// `[A-Za-z_][A-Za-z0-9_.]*`: keywords, op names, dtypes, `nan`, `inf`, ….
    Ident(&'a str),
    /// Decimal digits.
    Int(&'a str),
    /// Digits with a `.` and/or an exponent.
    Float(&'a str),
    /// A decoded string literal.
    Str(String),
    /// `%3`, `%x`, `%"a b"`.
    Value(ValueName),
    /// `@name` or `@"name"`.
    At(String),
    /// `?name`, a dim symbol.
    Symbol(&'a str),
    /// `?` alone, the unknown dim.
    Question,
    Colon,
    Comma,
    Equals,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Less,
    Greater,
    Arrow,
    Minus,
    Plus,
    Star,
    Eof,
}

/// The longest token text quoted back in an error message.
const MAX_QUOTED: usize = 40;

/// Shorten `s` for an error message.
fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_QUOTED {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX_QUOTED).collect();
        format!("{head}…")
    }
}

impl Tok<'_> {
    /// How an error message names this token: "`=`", "`foo`", "end of input", ….
    pub fn describe(&self) -> String {
        let punct = |s: &str| format!("`{s}`");
        match self {
            Tok::Ident(s) | Tok::Int(s) | Tok::Float(s) => format!("`{}`", clip(s)),
            Tok::Symbol(s) => format!("`?{}`", clip(s)),
            Tok::Str(s) => {
                let mut quoted = String::new();
                let _ = crate::attr::write_string(&mut quoted, &clip(s));
                format!("string {quoted}")
            }
            Tok::Value(v) => format!("`{}`", clip(&v.to_string())),
            Tok::At(s) => format!("`@{}`", clip(&crate::graph::quote_name(s))),
            Tok::Question => punct("?"),
            Tok::Colon => punct(":"),
            Tok::Comma => punct(","),
            Tok::Equals => punct("="),
            Tok::LBrace => punct("{"),
            Tok::RBrace => punct("}"),
            Tok::LParen => punct("("),
            Tok::RParen => punct(")"),
            Tok::LBracket => punct("["),
            Tok::RBracket => punct("]"),
            Tok::Less => punct("<"),
            Tok::Greater => punct(">"),
            Tok::Arrow => punct("->"),
            Tok::Minus => punct("-"),
            Tok::Plus => punct("+"),
            Tok::Star => punct("*"),
            Tok::Eof => "end of input".to_string(),
        }
    }
}

/// A token with its position and byte span in the source.
#[derive(Debug, Clone)]
pub(crate) struct Token<'a> {
    pub tok: Tok<'a>,
    pub pos: Pos,
    /// Byte offset of the first char.
    pub start: usize,
    /// Byte offset just past the last char.
    pub end: usize,
}

/// Produces tokens on demand.
#[derive(Debug)]
pub(crate) struct Lexer<'a> {
    src: &'a str,
    offset: usize,
    line: usize,
    column: usize,
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Control characters the format never contains raw (tab, CR and LF are whitespace).
fn is_forbidden(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\r' | '\n')
}

/// How an error message names a character.
fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

/// The most hex digits a `\u{…}` escape may have.
const MAX_HEX_DIGITS: usize = 6;

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, offset: 0, line: 1, column: 1 }
    }

    fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.column }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.offset..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_nth(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn eat_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.bump();
        }
    }

    fn since(&self, start: usize) -> &'a str {
        self.src.get(start..self.offset).unwrap_or("")
    }

    /// The next token; `Eof` forever once the input is exhausted.
    pub fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        self.skip_trivia()?;
        let pos = self.pos();
        let start = self.offset;
        let tok = match self.peek() {
            None => Tok::Eof,
            Some(c) => self.token_from(c, pos)?,
        };
        Ok(Token { tok, pos, start, end: self.offset })
    }

    fn token_from(&mut self, c: char, pos: Pos) -> Result<Tok<'a>, ParseError> {
        if is_ident_start(c) {
            return Ok(Tok::Ident(self.ident()));
        }
        if c.is_ascii_digit() {
            return self.number();
        }
        if c == '"' {
            return Ok(Tok::Str(self.string()?));
        }
        if is_forbidden(c) || !c.is_ascii() {
            return Err(pos.error(format!("unexpected character {}", describe_char(c))));
        }
        self.bump();
        let tok = match c {
            '%' => Tok::Value(self.value_name()?),
            '@' => Tok::At(self.name_after("`@`")?),
            '?' if self.peek().is_some_and(is_ident_start) => Tok::Symbol(self.ident()),
            '?' => Tok::Question,
            '-' if self.peek() == Some('>') => {
                self.bump();
                Tok::Arrow
            }
            '-' => Tok::Minus,
            ':' => Tok::Colon,
            ',' => Tok::Comma,
            '=' => Tok::Equals,
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            '<' => Tok::Less,
            '>' => Tok::Greater,
            '+' => Tok::Plus,
            '*' => Tok::Star,
            other => return Err(pos.error(format!("unexpected character {}", describe_char(other)))),
        };
        Ok(tok)
    }

    /// Skip whitespace and `;` comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r' | '\n') => {
                    self.bump();
                }
                Some(';') => self.skip_comment()?,
                _ => return Ok(()),
            }
        }
    }

    fn skip_comment(&mut self) -> Result<(), ParseError> {
        while let Some(c) = self.peek() {
            if c == '\n' {
                return Ok(());
            }
            if is_forbidden(c) {
                return Err(self.pos().error(format!("unexpected character {} in a comment", describe_char(c))));
            }
            self.bump();
        }
        Ok(())
    }

    fn ident(&mut self) -> &'a str {
        let start = self.offset;
        self.bump();
        self.eat_while(is_ident_continue);
        self.since(start)
    }

    /// After `%`: digits (an op result), an identifier or a string.
    fn value_name(&mut self) -> Result<ValueName, ParseError> {
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            let start = self.offset;
            self.eat_while(|c| c.is_ascii_digit());
            let digits = self.since(start).to_string();
            self.reject_glued("value number")?;
            return Ok(ValueName::Number(digits));
        }
        self.name_after("`%`").map(ValueName::Name)
    }

    /// An identifier or string right after `sigil` (no space in between).
    fn name_after(&mut self, sigil: &str) -> Result<String, ParseError> {
        match self.peek() {
            Some(c) if is_ident_start(c) => Ok(self.ident().to_string()),
            Some('"') => self.string(),
            other => {
                let found = other.map_or("end of input".to_string(), describe_char);
                Err(self
                    .pos()
                    .error(format!("expected a name (identifier or string) right after {sigil}, found {found}")))
            }
        }
    }

    /// Error if an identifier char is glued to the token just read (`12ab`, `1.5.3`).
    fn reject_glued(&self, what: &str) -> Result<(), ParseError> {
        match self.peek() {
            Some(c) if is_ident_continue(c) => {
                Err(self.pos().error(format!("unexpected {} right after the {what}", describe_char(c))))
            }
            _ => Ok(()),
        }
    }

    /// `[0-9]+ ('.' [0-9]*)? ([eE] [+-]? [0-9]+)?`; a `.` or exponent makes it a float.
    fn number(&mut self) -> Result<Tok<'a>, ParseError> {
        let start = self.offset;
        self.eat_while(|c| c.is_ascii_digit());
        let mut is_float = false;
        if self.peek() == Some('.') {
            is_float = true;
            self.bump();
            self.eat_while(|c| c.is_ascii_digit());
        }
        if self.at_exponent() {
            is_float = true;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            self.eat_while(|c| c.is_ascii_digit());
        }
        self.reject_glued("number")?;
        let text = self.since(start);
        Ok(if is_float { Tok::Float(text) } else { Tok::Int(text) })
    }

    fn at_exponent(&self) -> bool {
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        matches!(self.peek(), Some('e' | 'E'))
            && (digit(self.peek_nth(1)) || (matches!(self.peek_nth(1), Some('+' | '-')) && digit(self.peek_nth(2))))
    }

    /// A `"…"` literal, decoded.
    fn string(&mut self) -> Result<String, ParseError> {
        let open = self.pos();
        self.bump();
        let mut out = String::new();
        loop {
            let pos = self.pos();
            match self.bump() {
                None => {
                    return Err(
                        pos.error(format!("expected `\"` to close the string opened at {open}, found end of input"))
                    )
                }
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape(pos)?),
                Some(c) if is_forbidden(c) || c == '\n' || c == '\r' => {
                    return Err(pos.error(format!(
                        "unexpected character {} in a string (write it as \\u{{{:x}}})",
                        describe_char(c),
                        c as u32
                    )))
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The rest of an escape after `\` (which was at `pos`).
    fn escape(&mut self, pos: Pos) -> Result<char, ParseError> {
        match self.bump() {
            Some('"') => Ok('"'),
            Some('\\') => Ok('\\'),
            Some('n') => Ok('\n'),
            Some('t') => Ok('\t'),
            Some('u') => self.unicode_escape(pos),
            other => {
                let found = other.map_or("end of input".to_string(), describe_char);
                Err(pos.error(format!(
                    "expected an escape (\\\", \\\\, \\n, \\t or \\u{{hex}}) after `\\`, found {found}"
                )))
            }
        }
    }

    /// `{hex+}` after `\u`.
    fn unicode_escape(&mut self, pos: Pos) -> Result<char, ParseError> {
        let malformed = |lexer: &Lexer<'_>| {
            lexer.pos().error("expected `{`, 1 to 6 hex digits and `}` in a `\\u{…}` escape".to_string())
        };
        if self.bump() != Some('{') {
            return Err(malformed(self));
        }
        let start = self.offset;
        self.eat_while(|c| c.is_ascii_hexdigit());
        let hex = self.since(start);
        if hex.is_empty() || hex.len() > MAX_HEX_DIGITS || self.peek() != Some('}') {
            return Err(malformed(self));
        }
        self.bump();
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| pos.error(format!("`\\u{{{hex}}}` is not a unicode scalar value")))
    }
}
