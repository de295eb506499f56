//! Tensor dimensions: static sizes, named symbolic sizes, and polynomial expressions
//! over symbols (`?batch*?seq`, `?past+?seq`), plus `?` for a size nobody knows yet.
//!
//! A [`Dim`] is kept in a normal form (a sum of monomials with non-zero integer
//! coefficients, monomials sorted), so two equal expressions compare equal and print
//! identically. Reshape, concat and slice chains need exactly this arithmetic to keep
//! symbolic shapes exact instead of degrading to unknown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A product of symbols; empty means the constant monomial. Symbols are sorted, and may repeat.
type Monomial = Vec<String>;

/// One dimension of a tensor shape.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A polynomial over named symbols with integer coefficients; a static dim is the
    /// constant polynomial. Invariant: no zero coefficients.
    Expr(BTreeMap<Monomial, i64>),
    /// A size not known at compile time and not tied to any symbol (`?`).
    Unknown,
}

/// The longest symbol name accepted.
pub const MAX_SYMBOL_LEN: usize = 128;

/// True if `name` is a valid symbol name (`[A-Za-z_][A-Za-z0-9_.]*`, bounded length).
pub fn is_valid_symbol(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= MAX_SYMBOL_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

impl Dim {
    /// A static dimension.
    pub fn fixed(n: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if n != 0 {
            terms.insert(Vec::new(), n);
        }
        Dim::Expr(terms)
    }

    /// A symbolic dimension named `name` (spelled `?name`).
    pub fn sym(name: impl Into<String>) -> Dim {
        let mut terms = BTreeMap::new();
        terms.insert(vec![name.into()], 1);
        Dim::Expr(terms)
    }

    /// The static value, if this dim has no symbols.
    pub fn as_fixed(&self) -> Option<i64> {
        match self {
            Dim::Expr(terms) => match terms.len() {
                0 => Some(0),
                1 => terms.get(&Vec::new()).copied(),
                _ => None,
            },
            Dim::Unknown => None,
        }
    }

    /// The symbol name if this dim is exactly one symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match self {
            Dim::Expr(terms) if terms.len() == 1 => {
                let (mono, coef) = terms.iter().next()?;
                (*coef == 1 && mono.len() == 1).then(|| mono[0].as_str())
            }
            _ => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Dim::Unknown)
    }

    /// True when the value is fixed by the symbols (no `?` anywhere).
    pub fn is_known(&self) -> bool {
        !self.is_unknown()
    }

    /// Every symbol this dim mentions.
    pub fn symbols(&self) -> Vec<&str> {
        let mut out: Vec<&str> = match self {
            Dim::Expr(terms) => terms.keys().flatten().map(String::as_str).collect(),
            Dim::Unknown => Vec::new(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    fn combine(a: &Dim, b: &Dim, sign: i64) -> Dim {
        match (a, b) {
            (Dim::Expr(x), Dim::Expr(y)) => {
                let mut terms = x.clone();
                for (mono, coef) in y {
                    let entry = terms.entry(mono.clone()).or_insert(0);
                    *entry = entry.saturating_add(coef.saturating_mul(sign));
                    if *entry == 0 {
                        terms.remove(mono);
                    }
                }
                Dim::Expr(terms)
            }
            _ => Dim::Unknown,
        }
    }

    /// `self + other`.
    pub fn add(&self, other: &Dim) -> Dim {
        Dim::combine(self, other, 1)
    }

    /// `self - other`.
    pub fn sub(&self, other: &Dim) -> Dim {
        Dim::combine(self, other, -1)
    }

    /// `self * other`.
    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Expr(x), Dim::Expr(y)) => {
                let mut terms: BTreeMap<Monomial, i64> = BTreeMap::new();
                for (ma, ca) in x {
                    for (mb, cb) in y {
                        let mut mono: Monomial = ma.iter().chain(mb).cloned().collect();
                        mono.sort();
                        let entry = terms.entry(mono).or_insert(0);
                        *entry = entry.saturating_add(ca.saturating_mul(*cb));
                    }
                }
                terms.retain(|_, c| *c != 0);
                Dim::Expr(terms)
            }
            _ => Dim::Unknown,
        }
    }

    /// Exact division `self / other`, when the result is again a polynomial: `other` must
    /// be a single monomial (e.g. `4`, `?seq`, `2*?seq`) dividing every term. Otherwise `None`.
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        let (Dim::Expr(x), Dim::Expr(y)) = (self, other) else {
            return None;
        };
        if y.len() != 1 {
            return None;
        }
        let (dmono, dcoef) = y.iter().next()?;
        if *dcoef == 0 {
            return None;
        }
        let mut terms = BTreeMap::new();
        for (mono, coef) in x {
            if coef % dcoef != 0 {
                return None;
            }
            let mut rest = mono.clone();
            for s in dmono {
                let pos = rest.iter().position(|r| r == s)?;
                rest.remove(pos);
            }
            terms.insert(rest, coef / dcoef);
        }
        Some(Dim::Expr(terms))
    }

    /// Evaluate with concrete symbol values. `None` for `?`, a missing symbol, or overflow.
    pub fn eval(&self, bindings: &HashMap<String, i64>) -> Option<i64> {
        let Dim::Expr(terms) = self else {
            return None;
        };
        let mut total: i64 = 0;
        for (mono, coef) in terms {
            let mut term = *coef;
            for s in mono {
                term = term.checked_mul(*bindings.get(s)?)?;
            }
            total = total.checked_add(term)?;
        }
        Some(total)
    }

    /// The largest value of the dim when every symbol lies in `0..=bounds[symbol]`: the dim
    /// at the bounds, provided no non-constant term has a negative coefficient (the dim then
    /// grows with every symbol). `None` for `?`, an unbounded symbol, a negative term or
    /// overflow.
    pub fn upper_bound(&self, bounds: &BTreeMap<String, i64>) -> Option<i64> {
        let Dim::Expr(terms) = self else {
            return None;
        };
        if terms.iter().any(|(mono, coef)| !mono.is_empty() && *coef < 0) {
            return None;
        }
        let at_bounds: HashMap<String, i64> =
            self.symbols().into_iter().map(|s| Some((s.to_string(), *bounds.get(s)?))).collect::<Option<_>>()?;
        self.eval(&at_bounds)
    }

    /// The smallest value the dim can take when every symbol is a size (`≥ 0`): its constant
    /// term, provided no non-constant term has a negative coefficient. `None` otherwise.
    pub fn lower_bound(&self) -> Option<i64> {
        let Dim::Expr(terms) = self else {
            return None;
        };
        if terms.iter().any(|(mono, coef)| !mono.is_empty() && *coef < 0) {
            return None;
        }
        Some(terms.get(&Vec::new()).copied().unwrap_or(0))
    }

    /// How `self` compares with `other` for every non-negative value of the symbols, when
    /// that is decided: `a - b` static, or bounded away from zero by [`Dim::lower_bound`] on
    /// either side (`?seq` vs `-1` is `Greater`; `?seq` vs `1` is undecided).
    pub fn compare(&self, other: &Dim) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        let diff = self.sub(other);
        if let Some(v) = diff.as_fixed() {
            return Some(v.cmp(&0));
        }
        if diff.lower_bound().is_some_and(|lo| lo > 0) {
            return Some(Ordering::Greater);
        }
        if Dim::fixed(0).sub(&diff).lower_bound().is_some_and(|lo| lo > 0) {
            return Some(Ordering::Less);
        }
        None
    }

    /// Whether two dims are provably equal (`Some(true)`), provably different
    /// (`Some(false)`, only when both are static), or undecided (`None`).
    pub fn provably_eq(&self, other: &Dim) -> Option<bool> {
        match (self, other) {
            (Dim::Unknown, _) | (_, Dim::Unknown) => None,
            _ if self == other => Some(true),
            _ => match (self.as_fixed(), other.as_fixed()) {
                (Some(a), Some(b)) => Some(a == b),
                _ => None,
            },
        }
    }
}

impl From<i64> for Dim {
    fn from(n: i64) -> Dim {
        Dim::fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Dim::Expr(terms) = self else {
            return f.write_str("?");
        };
        if terms.is_empty() {
            return f.write_str("0");
        }
        // Highest-degree terms first, the constant last: `?a*?b+2*?c+1`.
        let mut ordered: Vec<(&Monomial, &i64)> = terms.iter().collect();
        ordered.sort_by(|(ma, _), (mb, _)| mb.len().cmp(&ma.len()).then_with(|| ma.cmp(mb)));
        for (i, (mono, coef)) in ordered.into_iter().enumerate() {
            let coef = *coef;
            if i > 0 {
                f.write_str(if coef < 0 { "-" } else { "+" })?;
            } else if coef < 0 {
                f.write_str("-")?;
            }
            let magnitude = coef.unsigned_abs();
            if mono.is_empty() {
                write!(f, "{magnitude}")?;
                continue;
            }
            if magnitude != 1 {
                write!(f, "{magnitude}*")?;
            }
            for (j, s) in mono.iter().enumerate() {
                if j > 0 {
                    f.write_str("*")?;
                }
                write!(f, "?{s}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_stays_normalised() {
        let b = Dim::sym("batch");
        let s = Dim::sym("seq");
        let bs = b.mul(&s);
        assert_eq!(bs.to_string(), "?batch*?seq");
        assert_eq!(bs.mul(&Dim::fixed(576)).div_exact(&Dim::fixed(576)), Some(bs.clone()));
        assert_eq!(bs.div_exact(&s), Some(b.clone()));
        let sum = s.add(&Dim::sym("past")).add(&Dim::fixed(1));
        assert_eq!(sum.to_string(), "?past+?seq+1");
        assert_eq!(sum.sub(&Dim::sym("past")).sub(&Dim::fixed(1)), s);
        assert_eq!(Dim::fixed(3).sub(&Dim::fixed(3)).as_fixed(), Some(0));
        assert_eq!(Dim::fixed(2).mul(&s).sub(&Dim::fixed(1)).to_string(), "2*?seq-1");
    }

    #[test]
    fn upper_bound_at_the_symbol_bounds() {
        let bounds = BTreeMap::from([("seq".to_string(), 64), ("past".to_string(), 100)]);
        let s = Dim::sym("seq");
        assert_eq!(s.upper_bound(&bounds), Some(64));
        assert_eq!(s.add(&Dim::sym("past")).add(&Dim::fixed(1)).upper_bound(&bounds), Some(165));
        assert_eq!(s.mul(&Dim::sym("past")).upper_bound(&bounds), Some(6400));
        // A negative term, an unbounded symbol or `?` has no bound here.
        assert_eq!(s.sub(&Dim::sym("past")).upper_bound(&bounds), None);
        assert_eq!(Dim::sym("batch").upper_bound(&bounds), None);
        assert_eq!(Dim::Unknown.upper_bound(&bounds), None);
        assert_eq!(s.sub(&Dim::fixed(1)).upper_bound(&bounds), Some(63));
    }

    #[test]
    fn comparisons_decided_for_non_negative_symbols() {
        use std::cmp::Ordering::*;
        let (s, p) = (Dim::sym("seq"), Dim::sym("past"));
        // Sizes are never -1: torch's `expand(-1)` test on a shape is decided.
        assert_eq!(s.compare(&Dim::fixed(-1)), Some(Greater));
        assert_eq!(Dim::fixed(-1).compare(&s), Some(Less));
        assert_eq!(p.add(&s).compare(&s.add(&p)), Some(Equal));
        assert_eq!(s.add(&Dim::fixed(1)).compare(&s), Some(Greater));
        assert_eq!(p.add(&s).compare(&s), None, "past may be 0");
        assert_eq!(s.compare(&Dim::fixed(1)), None);
        assert_eq!(s.sub(&p).compare(&Dim::fixed(0)), None);
        assert_eq!(Dim::Unknown.compare(&Dim::fixed(0)), None);
        assert_eq!(s.mul(&p).add(&Dim::fixed(2)).lower_bound(), Some(2));
        assert_eq!(s.sub(&Dim::fixed(1)).lower_bound(), Some(-1));
        assert_eq!(Dim::fixed(0).sub(&s).lower_bound(), None);
    }

    #[test]
    fn eval_with_bindings() {
        let d = Dim::sym("a").mul(&Dim::sym("b")).add(&Dim::fixed(3));
        let bindings = HashMap::from([("a".to_string(), 4), ("b".to_string(), 5)]);
        assert_eq!(d.eval(&bindings), Some(23));
        assert_eq!(Dim::Unknown.eval(&bindings), None);
        assert_eq!(Dim::sym("c").eval(&bindings), None);
    }
}
