//! Symbolic dimension expressions: integer polynomials over named symbols.
//!
//! A [`Poly`] is a sum of terms `coef · s₁ · s₂ · …` (a symbol may repeat, meaning a power).
//! The form is canonical — symbols inside a term sorted, terms sorted by their symbol lists,
//! like terms merged, zero terms dropped — so equal polynomials compare equal and serialize to
//! the same bytes. The runtime evaluates them against the symbol values it binds from input
//! shapes, with overflow-checked arithmetic. Self-contained on purpose: the runtime must not
//! depend on the compiler's IR.

use std::collections::BTreeMap;
use std::fmt;

/// One term of a [`Poly`]: `coef · Π symbols`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term {
    /// Sorted symbol names (repeats are powers); empty for the constant term.
    pub symbols: Vec<String>,
    /// Non-zero coefficient.
    pub coef: i64,
}

/// Why a [`Poly`] could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A symbol has no value.
    #[error("symbol `{0}` is not bound")]
    Unbound(String),
    /// The value does not fit in an `i64`.
    #[error("overflow evaluating `{0}`")]
    Overflow(String),
}

/// A canonical integer polynomial over named symbols (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Poly {
    terms: Vec<Term>,
}

impl Poly {
    /// The constant `c`.
    pub fn constant(c: i64) -> Self {
        Self::from_terms(vec![Term { symbols: Vec::new(), coef: c }])
    }

    /// The symbol `name` (coefficient 1).
    pub fn symbol(name: &str) -> Self {
        Self::from_terms(vec![Term { symbols: vec![name.to_string()], coef: 1 }])
    }

    /// Canonicalizes arbitrary terms. Coefficients of like terms are added with wrapping
    /// arithmetic (polynomials built by the compiler never come near `i64` limits; evaluation
    /// is checked).
    pub fn from_terms(terms: Vec<Term>) -> Self {
        let mut acc: BTreeMap<Vec<String>, i64> = BTreeMap::new();
        for mut t in terms {
            t.symbols.sort();
            let c = acc.entry(t.symbols).or_insert(0);
            *c = c.wrapping_add(t.coef);
        }
        Self { terms: acc.into_iter().filter(|(_, c)| *c != 0).map(|(symbols, coef)| Term { symbols, coef }).collect() }
    }

    /// The canonical terms.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// `self + other`.
    pub fn add(&self, other: &Poly) -> Poly {
        Self::from_terms(self.terms.iter().chain(&other.terms).cloned().collect())
    }

    /// `self · other`.
    pub fn mul(&self, other: &Poly) -> Poly {
        let mut out = Vec::with_capacity(self.terms.len() * other.terms.len());
        for a in &self.terms {
            for b in &other.terms {
                let mut symbols = a.symbols.clone();
                symbols.extend(b.symbols.iter().cloned());
                out.push(Term { symbols, coef: a.coef.wrapping_mul(b.coef) });
            }
        }
        Self::from_terms(out)
    }

    /// `c · self`.
    pub fn scale(&self, c: i64) -> Poly {
        self.mul(&Poly::constant(c))
    }

    /// The value if the polynomial has no symbols.
    pub fn as_constant(&self) -> Option<i64> {
        match self.terms.as_slice() {
            [] => Some(0),
            [t] if t.symbols.is_empty() => Some(t.coef),
            _ => None,
        }
    }

    /// The symbol name if the polynomial is exactly one symbol with coefficient 1.
    pub fn as_symbol(&self) -> Option<&str> {
        match self.terms.as_slice() {
            [t] if t.coef == 1 && t.symbols.len() == 1 => Some(&t.symbols[0]),
            _ => None,
        }
    }

    /// Every symbol the polynomial mentions.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().flat_map(|t| t.symbols.iter().map(String::as_str))
    }

    /// Evaluates with `lookup` giving symbol values; checked arithmetic.
    pub fn eval_with(&self, lookup: impl Fn(&str) -> Option<i64>) -> Result<i64, EvalError> {
        let overflow = || EvalError::Overflow(self.to_string());
        let mut sum: i64 = 0;
        for t in &self.terms {
            let mut p = t.coef;
            for s in &t.symbols {
                let v = lookup(s).ok_or_else(|| EvalError::Unbound(s.clone()))?;
                p = p.checked_mul(v).ok_or_else(overflow)?;
            }
            sum = sum.checked_add(p).ok_or_else(overflow)?;
        }
        Ok(sum)
    }

    /// Evaluates against a map of symbol values.
    pub fn eval(&self, bindings: &BTreeMap<String, i64>) -> Result<i64, EvalError> {
        self.eval_with(|s| bindings.get(s).copied())
    }
}

impl From<i64> for Poly {
    fn from(c: i64) -> Self {
        Poly::constant(c)
    }
}

impl From<&str> for Poly {
    fn from(s: &str) -> Self {
        Poly::symbol(s)
    }
}

impl fmt::Display for Poly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return write!(f, "0");
        }
        // Constant term last reads more naturally ("2*n + 1").
        let ordered = self
            .terms
            .iter()
            .filter(|t| !t.symbols.is_empty())
            .chain(self.terms.iter().filter(|t| t.symbols.is_empty()));
        for (i, t) in ordered.enumerate() {
            let (neg, mag) = (t.coef < 0, t.coef.unsigned_abs());
            match (i, neg) {
                (0, true) => write!(f, "-")?,
                (0, false) => {}
                (_, true) => write!(f, " - ")?,
                (_, false) => write!(f, " + ")?,
            }
            if t.symbols.is_empty() {
                write!(f, "{mag}")?;
            } else {
                if mag != 1 {
                    write!(f, "{mag}*")?;
                }
                write!(f, "{}", t.symbols.join("*"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_eval() {
        let n = Poly::symbol("n");
        let b = Poly::symbol("b");
        let e = b.mul(&n).scale(4).add(&Poly::constant(64)).add(&n.mul(&b));
        assert_eq!(e, n.mul(&b).scale(5).add(&Poly::constant(64)));
        assert_eq!(e.to_string(), "5*b*n + 64");
        let m: BTreeMap<String, i64> = [("n".to_string(), 3), ("b".to_string(), 2)].into();
        assert_eq!(e.eval(&m), Ok(94));
        assert_eq!(n.add(&n.scale(-1)), Poly::constant(0));
        assert_eq!(Poly::constant(0).as_constant(), Some(0));
        assert_eq!(n.as_symbol(), Some("n"));
        assert_eq!(n.scale(2).as_symbol(), None);
        assert_eq!(e.eval(&BTreeMap::new()), Err(EvalError::Unbound("b".into())));
        let big: BTreeMap<String, i64> = [("n".to_string(), i64::MAX), ("b".to_string(), 2)].into();
        assert!(matches!(e.eval(&big), Err(EvalError::Overflow(_))));
        assert_eq!(n.scale(-2).add(&Poly::constant(1)).to_string(), "-2*n + 1");
    }
}
