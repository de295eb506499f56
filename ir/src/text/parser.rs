//! The recursive-descent core of the `.fir` parser: a one-token cursor over the lexer,
//! plus the grammar pieces below items: types, dims, numbers, attributes and `dense`
//! literals. Nothing here recurses on input-controlled depth, and nothing allocates
//! from a size the input merely claims (element counts are checked as elements arrive).

use super::lexer::{Lexer, Pos, Tok, Token};
use super::ParseError;
use crate::attr::Attr;
use crate::dim::{is_valid_symbol, Dim, MAX_SYMBOL_LEN};
use crate::dtype::{DType, MAX_INT4_GROUP};
use crate::tensor::{checked_numel, Tensor};
use crate::types::{TensorType, MAX_RANK};
use std::collections::{BTreeMap, HashMap};

type Result<T> = std::result::Result<T, ParseError>;

/// A cursor holding the current token.
#[derive(Debug)]
pub(crate) struct Parser<'a> {
    lexer: Lexer<'a>,
    tok: Token<'a>,
}

/// A numeric literal as written: sign, and the unsigned spelling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Literal<'a> {
    pub negative: bool,
    pub kind: LiteralKind<'a>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiteralKind<'a> {
    Int(&'a str),
    Float(&'a str),
    Inf,
    NaN,
}

impl Literal<'_> {
    pub fn is_int(&self) -> bool {
        matches!(self.kind, LiteralKind::Int(_))
    }

    /// The value of an integer literal; overflow is an error.
    pub fn to_i64(self) -> Result<i64> {
        let LiteralKind::Int(digits) = self.kind else {
            return Err(self.pos.error(format!("expected an integer, found `{}`", self.spelling())));
        };
        let out_of_range = || self.pos.error(format!("integer `{}` does not fit in 64 bits", self.spelling()));
        let magnitude = i128::from(digits.parse::<u64>().map_err(|_| out_of_range())?);
        let value = if self.negative { -magnitude } else { magnitude };
        i64::try_from(value).map_err(|_| out_of_range())
    }

    /// The value as an f64 (integers converted like `as f64`).
    pub fn to_f64(self) -> Result<f64> {
        let magnitude = match self.kind {
            LiteralKind::Int(_) => return Ok(self.to_i64()? as f64),
            LiteralKind::Float(text) => self.finite(text.parse::<f64>().ok(), text)?,
            LiteralKind::Inf => f64::INFINITY,
            LiteralKind::NaN => f64::NAN,
        };
        Ok(if self.negative { -magnitude } else { magnitude })
    }

    /// The value rounded once, directly from the decimal text to f32 (so a printed f32
    /// reads back bit-exactly), widened to f64.
    pub fn to_f32_as_f64(self) -> Result<f64> {
        match self.kind {
            LiteralKind::Float(text) => {
                self.finite(text.parse::<f64>().ok(), text)?;
                let magnitude = text.parse::<f32>().map_err(|_| self.malformed(text))?;
                Ok(f64::from(if self.negative { -magnitude } else { magnitude }))
            }
            _ => self.to_f64(),
        }
    }

    fn finite(&self, value: Option<f64>, text: &str) -> Result<f64> {
        match value {
            Some(v) if v.is_finite() => Ok(v),
            Some(_) => Err(self.pos.error(format!("float `{}` is out of range", self.spelling_of(text)))),
            None => Err(self.malformed(text)),
        }
    }

    fn malformed(&self, text: &str) -> ParseError {
        self.pos.error(format!("malformed number `{}`", self.spelling_of(text)))
    }

    fn spelling_of(&self, text: &str) -> String {
        format!("{}{text}", if self.negative { "-" } else { "" })
    }

    fn spelling(&self) -> String {
        match self.kind {
            LiteralKind::Int(t) | LiteralKind::Float(t) => self.spelling_of(t),
            LiteralKind::Inf => self.spelling_of("inf"),
            LiteralKind::NaN => self.spelling_of("nan"),
        }
    }
}

/// A parsed `{k = v, …}` dictionary with each key's position.
#[derive(Debug, Default)]
pub(crate) struct AttrDict {
    pub map: BTreeMap<String, Attr>,
    pub positions: HashMap<String, Pos>,
}

/// How the elements of a `dense` literal are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    /// Numbers rounded to f32 from the text.
    F32,
    /// Numbers read as f64 (then rounded by the tensor's dtype).
    F64,
    Int,
    Bool,
}

impl ElementKind {
    fn of(dtype: DType) -> ElementKind {
        match dtype {
            DType::F32 | DType::Q8_0 | DType::Q4_0 | DType::Int4 { .. } => ElementKind::F32,
            DType::F16 | DType::BF16 | DType::F64 => ElementKind::F64,
            DType::Bool => ElementKind::Bool,
            DType::I64 | DType::I32 | DType::I8 | DType::U8 => ElementKind::Int,
        }
    }
}

/// Elements of a `dense` literal as they are read.
#[derive(Debug)]
enum Elements {
    Floats(Vec<f64>),
    Ints(Vec<i64>),
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str) -> Result<Parser<'a>> {
        let mut lexer = Lexer::new(src);
        let tok = lexer.next_token()?;
        Ok(Parser { lexer, tok })
    }

    // ------------------------------------------------------------------ cursor

    pub fn peek(&self) -> &Tok<'a> {
        &self.tok.tok
    }

    pub fn pos(&self) -> Pos {
        self.tok.pos
    }

    /// Consume the current token and return it.
    pub fn bump(&mut self) -> Result<Token<'a>> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.tok, next))
    }

    pub fn at(&self, tok: &Tok<'_>) -> bool {
        self.tok.tok == *tok
    }

    pub fn at_keyword(&self, keyword: &str) -> bool {
        matches!(self.tok.tok, Tok::Ident(s) if s == keyword)
    }

    /// Consume the current token if it is `tok`.
    pub fn eat(&mut self, tok: &Tok<'_>) -> Result<bool> {
        if self.at(tok) {
            self.bump()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// The error "expected {what}, found {current token}" at the current token.
    pub fn unexpected(&self, what: &str) -> ParseError {
        self.pos().error(format!("expected {what}, found {}", self.tok.tok.describe()))
    }

    pub fn expect(&mut self, tok: &Tok<'_>, what: &str) -> Result<Token<'a>> {
        if self.at(tok) {
            self.bump()
        } else {
            Err(self.unexpected(what))
        }
    }

    pub fn expect_keyword(&mut self, keyword: &str, what: &str) -> Result<Token<'a>> {
        if self.at_keyword(keyword) {
            self.bump()
        } else {
            Err(self.unexpected(what))
        }
    }

    pub fn expect_eof(&mut self, what: &str) -> Result<()> {
        if self.at(&Tok::Eof) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// `@name`: returns the name and its position.
    pub fn at_name(&mut self, what: &str) -> Result<(String, Pos)> {
        let pos = self.pos();
        match self.peek() {
            Tok::At(_) => match self.bump()?.tok {
                Tok::At(name) => Ok((name, pos)),
                _ => Err(self.unexpected(what)),
            },
            _ => Err(self.unexpected(what)),
        }
    }

    /// A bare name: an identifier or a string.
    pub fn name(&mut self, what: &str) -> Result<(String, Pos)> {
        let pos = self.pos();
        match self.peek() {
            Tok::Ident(s) => {
                let name = s.to_string();
                self.bump()?;
                Ok((name, pos))
            }
            Tok::Str(_) => match self.bump()?.tok {
                Tok::Str(s) => Ok((s, pos)),
                _ => Err(self.unexpected(what)),
            },
            _ => Err(self.unexpected(what)),
        }
    }

    /// Parse `item (',' item)*` where the list ends at `close` (not consumed); an empty
    /// list is allowed when `close` comes first.
    pub fn comma_list(
        &mut self,
        close: &Tok<'_>,
        what: &str,
        mut item: impl FnMut(&mut Parser<'a>) -> Result<()>,
    ) -> Result<()> {
        if self.at(close) {
            return Ok(());
        }
        loop {
            item(self)?;
            if !self.eat(&Tok::Comma)? {
                return if self.at(close) {
                    Ok(())
                } else {
                    Err(self.unexpected(&format!("`,` or {} in {what}", close.describe())))
                };
            }
        }
    }

    // ------------------------------------------------------------------ numbers

    pub fn at_number(&self) -> bool {
        matches!(self.peek(), Tok::Minus | Tok::Int(_) | Tok::Float(_) | Tok::Ident("nan" | "inf"))
    }

    /// `'-'? (int | float | inf)` or `nan`; the `-` must touch the number.
    pub fn literal(&mut self, what: &str) -> Result<Literal<'a>> {
        let pos = self.pos();
        let mut negative = false;
        if self.at(&Tok::Minus) {
            let minus = self.bump()?;
            if self.tok.start != minus.end {
                return Err(self.unexpected("a number right after `-` (no space)"));
            }
            negative = true;
        }
        let kind = match *self.peek() {
            Tok::Int(text) => LiteralKind::Int(text),
            Tok::Float(text) => LiteralKind::Float(text),
            Tok::Ident("inf") => LiteralKind::Inf,
            Tok::Ident("nan") if !negative => LiteralKind::NaN,
            _ if negative => return Err(self.unexpected("a number after `-`")),
            _ => return Err(self.unexpected(what)),
        };
        self.bump()?;
        Ok(Literal { negative, kind, pos })
    }

    fn unsigned(&mut self, what: &str) -> Result<u64> {
        let pos = self.pos();
        match *self.peek() {
            Tok::Int(text) => {
                self.bump()?;
                text.parse::<u64>().map_err(|_| pos.error(format!("integer `{text}` does not fit in 64 bits")))
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// A non-negative integer such as a raw offset.
    pub fn offset(&mut self, what: &str) -> Result<u64> {
        self.unsigned(what)
    }

    // ------------------------------------------------------------------ types

    /// `dtype '[' dims ']'`.
    pub fn tensor_type(&mut self) -> Result<TensorType> {
        let dtype = self.dtype("a dtype (f32, i64, bool, …)")?;
        self.expect(&Tok::LBracket, "`[` after the dtype")?;
        let mut shape = Vec::new();
        self.comma_list(&Tok::RBracket, "the shape", |p| {
            if shape.len() == MAX_RANK {
                return Err(p.pos().error(format!("too many dimensions: a type has at most {MAX_RANK}")));
            }
            shape.push(p.dim()?);
            Ok(())
        })?;
        self.bump()?;
        Ok(TensorType::new(dtype, shape))
    }

    pub fn at_dtype(&self) -> bool {
        matches!(self.peek(), Tok::Ident(s) if *s == "int4" || s.parse::<DType>().is_ok())
    }

    /// A dtype spelling, including `int4<G>`.
    pub fn dtype(&mut self, what: &str) -> Result<DType> {
        let pos = self.pos();
        let Tok::Ident(word) = *self.peek() else {
            return Err(self.unexpected(what));
        };
        if word == "int4" {
            self.bump()?;
            self.expect(&Tok::Less, "`<` after `int4`")?;
            let group_pos = self.pos();
            let group = self.unsigned("the group size of `int4<G>`")?;
            self.expect(&Tok::Greater, "`>` after the int4 group size")?;
            return u32::try_from(group)
                .ok()
                .filter(|g| *g >= 2 && g % 2 == 0 && *g <= MAX_INT4_GROUP)
                .map(|group_size| DType::Int4 { group_size })
                .ok_or_else(|| {
                    group_pos.error(format!(
                        "int4 group size must be even and between 2 and {MAX_INT4_GROUP}, found {group}"
                    ))
                });
        }
        let dtype = word.parse::<DType>().map_err(|e| pos.error(e.to_string()))?;
        self.bump()?;
        Ok(dtype)
    }

    /// One dimension: `?` or a polynomial; a static dim must not be negative.
    fn dim(&mut self) -> Result<Dim> {
        if self.eat(&Tok::Question)? {
            return Ok(Dim::Unknown);
        }
        let pos = self.pos();
        let dim = self.poly(pos)?;
        match dim.as_fixed() {
            Some(n) if n < 0 => Err(pos.error(format!("dimension {n} is negative"))),
            _ => Ok(dim),
        }
    }

    /// `'-'? term (('+' | '-') term)*`, normalised with checked arithmetic.
    fn poly(&mut self, pos: Pos) -> Result<Dim> {
        let overflow = || pos.error("dimension expression overflows 64-bit integers");
        let mut terms: BTreeMap<Vec<String>, i128> = BTreeMap::new();
        let mut negative = self.eat(&Tok::Minus)?;
        loop {
            let (coefficient, monomial) = self.term()?;
            let signed = if negative { -coefficient } else { coefficient };
            let entry = terms.entry(monomial).or_insert(0);
            *entry = entry.checked_add(signed).ok_or_else(overflow)?;
            if self.eat(&Tok::Plus)? {
                negative = false;
            } else if self.eat(&Tok::Minus)? {
                negative = true;
            } else {
                break;
            }
        }
        let mut normal = BTreeMap::new();
        for (monomial, coefficient) in terms {
            if coefficient != 0 {
                normal.insert(monomial, i64::try_from(coefficient).map_err(|_| overflow())?);
            }
        }
        Ok(Dim::Expr(normal))
    }

    /// `factor ('*' factor)*`: a coefficient and a sorted list of symbols.
    fn term(&mut self) -> Result<(i128, Vec<String>)> {
        let pos = self.pos();
        let mut coefficient: i128 = 1;
        let mut monomial = Vec::new();
        loop {
            match *self.peek() {
                Tok::Int(_) => {
                    let factor = self.unsigned("an integer")?;
                    coefficient = coefficient
                        .checked_mul(i128::from(factor))
                        .filter(|c| i64::try_from(*c).is_ok() || i64::try_from(-*c).is_ok())
                        .ok_or_else(|| pos.error("dimension expression overflows 64-bit integers"))?;
                }
                Tok::Symbol(name) => {
                    if !is_valid_symbol(name) {
                        return Err(self.pos().error(format!(
                            "symbol `?{}…` is longer than {MAX_SYMBOL_LEN} characters",
                            name.get(..16).unwrap_or(name)
                        )));
                    }
                    monomial.push(name.to_string());
                    self.bump()?;
                }
                _ => return Err(self.unexpected("a dimension (an integer, `?name` or `?`)")),
            }
            if !self.eat(&Tok::Star)? {
                break;
            }
        }
        monomial.sort();
        Ok((coefficient, monomial))
    }

    // ------------------------------------------------------------------ attributes

    /// `'{' (name '=' attr (',' name '=' attr)*)? '}'`; keys may be quoted strings.
    pub fn attr_dict(&mut self) -> Result<AttrDict> {
        self.expect(&Tok::LBrace, "`{` to start attributes")?;
        let mut dict = AttrDict::default();
        self.comma_list(&Tok::RBrace, "the attributes", |p| {
            let (key, pos) = p.name("an attribute name")?;
            if let Some(first) = dict.positions.get(&key) {
                return Err(pos.error(format!("attribute `{key}` is given twice (first at {first})")));
            }
            p.expect(&Tok::Equals, &format!("`=` after attribute name `{key}`"))?;
            let value = p.attr_value()?;
            dict.positions.insert(key.clone(), pos);
            dict.map.insert(key, value);
            Ok(())
        })?;
        self.bump()?;
        Ok(dict)
    }

    fn attr_value(&mut self) -> Result<Attr> {
        const WHAT: &str = "an attribute value";
        if self.at_number() {
            let literal = self.literal(WHAT)?;
            return if literal.is_int() { literal.to_i64().map(Attr::Int) } else { literal.to_f64().map(Attr::Float) };
        }
        match self.peek() {
            Tok::Ident("true") => self.bump().map(|_| Attr::Bool(true)),
            Tok::Ident("false") => self.bump().map(|_| Attr::Bool(false)),
            Tok::Ident("dense") => self.dense().map(Attr::Tensor),
            Tok::Ident(_) if self.at_dtype() => self.dtype(WHAT).map(Attr::DType),
            Tok::Str(_) => match self.bump()?.tok {
                Tok::Str(s) => Ok(Attr::Str(s)),
                _ => Err(self.unexpected(WHAT)),
            },
            Tok::LBracket => self.number_list(),
            _ => Err(self.unexpected(WHAT)),
        }
    }

    /// `[]`, `[int, …]` or `[float, …]` (ints allowed among floats). `[]` reads as an
    /// empty integer list.
    fn number_list(&mut self) -> Result<Attr> {
        self.expect(&Tok::LBracket, "`[`")?;
        let mut literals = Vec::new();
        self.comma_list(&Tok::RBracket, "the list", |p| {
            literals.push(p.literal("a number in the list")?);
            Ok(())
        })?;
        self.bump()?;
        if literals.iter().all(Literal::is_int) {
            literals.into_iter().map(Literal::to_i64).collect::<Result<_>>().map(Attr::Ints)
        } else {
            literals.into_iter().map(Literal::to_f64).collect::<Result<_>>().map(Attr::Floats)
        }
    }

    // ------------------------------------------------------------------ literals

    /// `dense '<' type ':' '[' elems ']' '>'`, at the `dense` keyword.
    pub fn dense(&mut self) -> Result<Tensor> {
        self.expect_keyword("dense", "`dense`")?;
        self.expect(&Tok::Less, "`<` after `dense`")?;
        let type_pos = self.pos();
        let ty = self.tensor_type()?;
        let shape = static_shape(&ty, type_pos)?;
        let numel =
            checked_numel(&shape).ok_or_else(|| type_pos.error(format!("the element count of {ty} overflows")))?;
        self.expect(&Tok::Colon, "`:` after the literal's type")?;
        self.expect(&Tok::LBracket, "`[` to start the elements")?;
        let elements = self.elements(&ty, numel)?;
        self.expect(&Tok::Greater, "`>` to close the `dense` literal")?;
        let built = match elements {
            Elements::Floats(values) => Tensor::from_f64(ty.dtype, shape, values),
            Elements::Ints(values) => Tensor::from_i64(ty.dtype, shape, values),
        };
        built.map_err(|e| type_pos.error(e.to_string()))
    }

    /// The elements up to and including `]`; never more than `numel` are read.
    fn elements(&mut self, ty: &TensorType, numel: usize) -> Result<Elements> {
        let kind = ElementKind::of(ty.dtype);
        let mut elements = match kind {
            ElementKind::F32 | ElementKind::F64 => Elements::Floats(Vec::new()),
            ElementKind::Int | ElementKind::Bool => Elements::Ints(Vec::new()),
        };
        let mut count = 0usize;
        self.comma_list(&Tok::RBracket, "the elements", |p| {
            if count == numel {
                return Err(p.pos().error(format!("too many elements: {ty} has {numel}")));
            }
            p.element(kind, ty.dtype, &mut elements)?;
            count += 1;
            Ok(())
        })?;
        if count != numel {
            return Err(self.pos().error(format!("expected {numel} elements for {ty}, found {count}")));
        }
        self.bump()?;
        Ok(elements)
    }

    fn element(&mut self, kind: ElementKind, dtype: DType, out: &mut Elements) -> Result<()> {
        match (kind, out) {
            (ElementKind::Bool, Elements::Ints(values)) => {
                let value = match self.peek() {
                    Tok::Ident("true") => 1,
                    Tok::Ident("false") => 0,
                    _ => return Err(self.unexpected("`true` or `false` (a bool element)")),
                };
                self.bump()?;
                values.push(value);
            }
            (ElementKind::Int, Elements::Ints(values)) => {
                let what = format!("an integer (an {dtype} element)");
                let pos = self.pos();
                let literal = self.literal(&what)?;
                if !literal.is_int() {
                    return Err(pos.error(format!("expected {what}, found `{}`", literal.spelling())));
                }
                values.push(literal.to_i64()?);
            }
            (ElementKind::F32, Elements::Floats(values)) => {
                values.push(self.literal(&format!("a number (a {dtype} element)"))?.to_f32_as_f64()?);
            }
            (_, Elements::Floats(values)) => {
                values.push(self.literal(&format!("a number (a {dtype} element)"))?.to_f64()?);
            }
            (_, Elements::Ints(_)) => return Err(self.unexpected("an element")),
        }
        Ok(())
    }
}

/// The shape of a literal's type, which must be static and non-negative.
fn static_shape(ty: &TensorType, pos: Pos) -> Result<Vec<usize>> {
    ty.shape
        .iter()
        .map(|d| d.as_fixed().and_then(|n| usize::try_from(n).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| pos.error(format!("a dense literal needs a static shape, found {ty}")))
}
