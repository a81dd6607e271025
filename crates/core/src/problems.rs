//! Problems found in a config file, located by key path and line: what every
//! section's validation writes into (`varta_core::config` re-exports these).

use std::fmt;

/// A config problem, located by key path and (when known) line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File the config came from.
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    /// Key path, e.g. `cameras[2].url`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: key `{}`: {}", self.file, l, self.key, self.message),
            None => write!(f, "{}: key `{}`: {}", self.file, self.key, self.message),
        }
    }
}

/// All problems found in one file.
#[derive(Clone, Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One step of a key path.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A key path built during validation.
#[derive(Clone, Debug, Default)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// `root.key`.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut p = self.0.clone();
        p.push(Seg::Key(k.to_owned()));
        KeyPath(p)
    }
    /// `root[i]`.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.0.clone();
        p.push(Seg::Index(i));
        KeyPath(p)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Collects problems while walking a parsed config; locates them in the source.
pub struct Problems<'a> {
    file: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
    text: &'a str,
    found: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    /// A collector for `text` read from `file`.
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Problems { file, doc: toml_edit::ImDocument::parse(text).ok(), text, found: Vec::new() }
    }

    /// Records that the value at `path` is wrong.
    pub fn add(&mut self, path: &KeyPath, message: impl Into<String>) {
        let line = self.line_of(path);
        self.found.push(ConfigError { file: self.file.into(), line, key: path.to_string(), message: message.into() });
    }

    /// Checks each range under `table` (NaN is out of every range): the one range
    /// check of every section.
    pub fn check_ranges(&mut self, table: &KeyPath, ranges: &[Range<'_>]) {
        for r in ranges {
            let inside = if r.lo_open { r.value > r.lo && r.value <= r.hi } else { (r.lo..=r.hi).contains(&r.value) };
            if !inside {
                let message = match (r.lo_open, r.hi.is_finite()) {
                    (false, true) => format!("must be between {} and {}", r.lo, r.hi),
                    (false, false) => format!("must be at least {}", r.lo),
                    (true, true) => format!("must be greater than {} and at most {}", r.lo, r.hi),
                    (true, false) => format!("must be greater than {}", r.lo),
                };
                self.add(&table.key(r.key), message);
            }
        }
    }

    /// Done: `Ok` if nothing was found.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.found))
        }
    }

    /// The line of the deepest part of `path` present in the document.
    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        // Where the walk stands: a table of an array of tables has no `Item` of its own.
        enum At<'d> {
            Item(&'d toml_edit::Item),
            Table(&'d toml_edit::Table),
        }
        let doc = self.doc.as_ref()?;
        let mut at = At::Table(doc.as_table());
        let mut span = None;
        for seg in &path.0 {
            let next = match (seg, &at) {
                (Seg::Key(k), At::Table(t)) => t.get_key_value(k).map(|(key, item)| (key.span(), At::Item(item))),
                (Seg::Key(k), At::Item(i)) => {
                    i.as_table_like().and_then(|t| t.get_key_value(k)).map(|(key, item)| (key.span(), At::Item(item)))
                }
                (Seg::Index(n), At::Item(i)) => match i.as_array_of_tables() {
                    Some(aot) => aot.get(*n).map(|t| (t.span(), At::Table(t))),
                    None => i.as_array().and_then(|a| a.get(*n)).map(|v| (v.span(), At::Item(i))),
                },
                (Seg::Index(_), At::Table(_)) => None,
            };
            let Some((s, a)) = next else { break };
            span = s.or(span);
            at = a;
        }
        span.map(|s| line_at(self.text, s.start))
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The allowed range of one numeric key, for [`Problems::check_ranges`]; values of
/// any numeric type are given as `f64`.
#[derive(Clone, Copy, Debug)]
pub struct Range<'k> {
    key: &'k str,
    value: f64,
    lo: f64,
    hi: f64,
    lo_open: bool,
}

impl<'k> Range<'k> {
    /// `lo <= value <= hi`; an infinite `hi` reads "at least `lo`".
    pub fn closed(key: &'k str, value: f64, lo: f64, hi: f64) -> Self {
        Range { key, value, lo, hi, lo_open: false }
    }
    /// `lo < value <= hi`; an infinite `hi` reads "greater than `lo`".
    pub fn above(key: &'k str, value: f64, lo: f64, hi: f64) -> Self {
        Range { key, value, lo, hi, lo_open: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_check_says_which_range() {
        let mut p = Problems::new("t.toml", "[s]\na = 1\n");
        let at = KeyPath::default().key("s");
        p.check_ranges(
            &at,
            &[
                Range::closed("a", 5.0, 0.0, 1.0),
                Range::closed("b", 0.0, 1.0, f64::INFINITY),
                Range::above("c", 0.0, 0.0, 60.0),
                Range::above("d", f64::NAN, 0.0, f64::INFINITY),
                Range::closed("ok", 1.0, 1.0, 1.0),
            ],
        );
        let e = p.finish().unwrap_err().0;
        let got: Vec<(&str, &str, Option<usize>)> =
            e.iter().map(|e| (e.key.as_str(), e.message.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("s.a", "must be between 0 and 1", Some(2)),
                ("s.b", "must be at least 1", Some(1)),
                ("s.c", "must be greater than 0 and at most 60", Some(1)),
                ("s.d", "must be greater than 0", Some(1)),
            ]
        );
    }
}
