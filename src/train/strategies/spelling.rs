//! A strategy's spelling on the command line, split for the strategy files'
//! parsers: the kind before the first `:` (`local:tau=8`), or before the
//! first `,` for `sync,compress=…` (which names no algorithm), then the
//! comma-separated settings.

use std::str::FromStr;

use crate::algorithms::Algorithm;
use crate::error::{Error, Result};

/// A spelling, split into its kind and its settings.
#[derive(Debug, Clone, Copy)]
pub struct Spelling<'a> {
    text: &'a str,
    kind: &'a str,
    rest: &'a str,
}

impl<'a> Spelling<'a> {
    /// Splits `s` (surrounding blanks ignored).
    pub fn new(s: &'a str) -> Self {
        let text = s.trim();
        let (kind, rest) = match text.find([':', ',']) {
            Some(i) if text[..i] == *"sync" || text.as_bytes()[i] == b':' => (&text[..i], &text[i + 1..]),
            _ => (text, ""),
        };
        Spelling { text, kind, rest }
    }

    /// The whole spelling.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The kind: `sync`, `local`, `gossip`, …
    pub fn kind(&self) -> &'a str {
        self.kind
    }

    /// What follows the kind's `:` (or `,`).
    pub fn rest(&self) -> &'a str {
        self.rest
    }

    /// The comma-separated settings after the kind, blanks trimmed, empty ones skipped.
    pub fn items(&self) -> impl Iterator<Item = &'a str> {
        self.rest.split(',').map(str::trim).filter(|i| !i.is_empty())
    }

    /// An invalid-strategy error with `reason`.
    pub fn invalid(&self, reason: String) -> Error {
        Error::InvalidArgument {
            what: "strategy",
            reason,
        }
    }

    /// The settings of a `sync` spelling (`sync[:ALGO][,compress=C][,error-feedback=on|off]`);
    /// `None` for another kind.
    ///
    /// # Errors
    /// An unknown algorithm or setting, a repeated `compress=`, an
    /// `error-feedback` other than on or off.
    pub fn gradient(&self) -> Option<Result<Gradient<'a>>> {
        (self.kind == "sync").then(|| self.parse_gradient())
    }

    fn parse_gradient(&self) -> Result<Gradient<'a>> {
        let s = self.text;
        let mut items = self.items().peekable();
        let algorithm = match items.peek() {
            Some(first) if !first.contains('=') => {
                let a = first.parse()?;
                items.next();
                Some(a)
            }
            _ => None,
        };
        let mut g = Gradient {
            algorithm,
            compress: None,
            feedback: None,
        };
        for item in items {
            match item.split_once('=') {
                Some(("compress", value)) => {
                    if g.compress.is_some() {
                        return Err(self.invalid(format!("`{s}`: one compress= setting at most")));
                    }
                    let (name, arg) = match value.split_once(':') {
                        Some((name, arg)) => (name, Some(arg)),
                        None => (value, None),
                    };
                    g.compress = Some(Compress {
                        item,
                        value,
                        name,
                        arg,
                    });
                }
                Some(("error-feedback", v)) => {
                    g.feedback = Some(match v {
                        "on" => true,
                        "off" => false,
                        _ => return Err(self.invalid(format!("`{item}` in `{s}`: error-feedback=on|off"))),
                    })
                }
                _ => {
                    return Err(self.invalid(format!(
                        "unknown setting `{item}` in `{s}` (compress=C, error-feedback=on|off)"
                    )))
                }
            }
        }
        Ok(g)
    }

    /// For a compressor of synchronous SGD named `name` (`compress=NAME:ARG`):
    /// `build` applied to the spelling's settings; `None` when the
    /// spelling is not `sync` or names another compressor.
    pub fn compressor<T>(
        &self,
        name: &str,
        build: impl FnOnce(&Gradient<'a>, &Compress<'a>) -> Result<T>,
    ) -> Option<Result<T>> {
        match self.gradient()? {
            Ok(g) => match g.compress {
                Some(c) if c.name == name => Some(build(&g, &c)),
                _ => None,
            },
            Err(e) => Some(Err(e)),
        }
    }
}

/// The settings of a `sync` spelling.
#[derive(Debug, Clone, Copy)]
pub struct Gradient<'a> {
    /// The all-reduce algorithm, when named (`sync:butterfly`).
    pub algorithm: Option<Algorithm>,
    /// The `compress=` setting, when given.
    pub compress: Option<Compress<'a>>,
    /// `error-feedback=on|off`, when given.
    pub feedback: Option<bool>,
}

/// A `compress=NAME[:ARG]` setting.
#[derive(Debug, Clone, Copy)]
pub struct Compress<'a> {
    /// The whole setting (`compress=topk:0.01`).
    pub item: &'a str,
    /// What follows `compress=` (`topk:0.01`).
    pub value: &'a str,
    /// Before the `:` (`topk`).
    pub name: &'a str,
    /// After the `:` (`0.01`, `rank=2`).
    pub arg: Option<&'a str>,
}

impl Compress<'_> {
    /// The argument (after `key=` when `key` is given) as a `T`, or an
    /// error naming the setting and saying `takes` (`topk takes a fraction,
    /// e.g. topk:0.01`).
    pub fn number<T: FromStr>(&self, spelling: &Spelling<'_>, key: Option<&str>, takes: &str) -> Result<T> {
        let arg = match key {
            Some(key) => self
                .arg
                .and_then(|a| a.strip_prefix(key))
                .and_then(|a| a.strip_prefix('=')),
            None => self.arg,
        };
        arg.and_then(|a| a.parse().ok())
            .ok_or_else(|| spelling.invalid(format!("`{}` in `{}`: {takes}", self.item, spelling.text())))
    }
}
