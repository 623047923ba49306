//! Errors of the policy phases. Every error names the JSON path of the offending field
//! (`rules[2].effects[0].ban_apps`) and, when it sits inside a rule, the rule's id, because
//! that is what the officer fixing the file searches for.

use std::fmt;

/// One problem in a policy document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    path: String,
    rule: Option<String>,
    line: Option<usize>,
    kind: PolicyErrorKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// Not JSON.
    Syntax(String),
    /// JSON, but not of the policy's shape (wrong type, unknown or missing field).
    Shape(String),
    /// A document format this agent does not understand.
    UnsupportedFormat(u32),
    /// Two rules share an id.
    DuplicateRuleId(String),
    /// A reference to an app set that is not defined.
    UnknownAppSet(String),
    /// A reference to a zone that is not defined.
    UnknownZone(String),
    /// A value outside what the field allows; the text says what is allowed.
    InvalidValue(String),
}

impl PolicyError {
    pub(crate) fn new(path: impl Into<String>, rule: Option<&str>, kind: PolicyErrorKind) -> Self {
        Self {
            path: path.into(),
            rule: rule.map(str::to_owned),
            line: None,
            kind,
        }
    }

    pub(crate) fn invalid(
        path: impl Into<String>,
        rule: Option<&str>,
        msg: impl Into<String>,
    ) -> Self {
        Self::new(path, rule, PolicyErrorKind::InvalidValue(msg.into()))
    }

    /// JSON path of the offending field; empty for the document itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Id of the rule the field belongs to, when it belongs to one.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// 1-based line in the source, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What is wrong.
    pub fn kind(&self) -> &PolicyErrorKind {
        &self.kind
    }
}

impl fmt::Display for PolicyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(m) => write!(f, "not valid JSON: {m}"),
            Self::Shape(m) => f.write_str(m),
            Self::UnsupportedFormat(v) => {
                write!(
                    f,
                    "format `{v}` is not supported (this agent reads format {})",
                    super::FORMAT
                )
            }
            Self::DuplicateRuleId(id) => write!(f, "rule id `{id}` is used more than once"),
            Self::UnknownAppSet(n) => write!(f, "app set `{n}` is not defined in `app_sets`"),
            Self::UnknownZone(n) => write!(f, "zone `{n}` is not defined in `zones`"),
            Self::InvalidValue(m) => f.write_str(m),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        f.write_str(path)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, " in rule `{rule}`")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// All problems found in a document (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub(crate) fn one(e: PolicyError) -> Self {
        Self(vec![e])
    }

    /// The problems, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Re-reads a document that failed the fast typed parse, to say where it failed.
pub(crate) fn locate_parse_error(bytes: &[u8]) -> PolicyError {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            let mut err = PolicyError::new("", None, PolicyErrorKind::Syntax(strip_position(&e)));
            err.line = Some(e.line());
            return err;
        }
    };
    // The line of a shape error is known only from the byte parse.
    let line = serde_json::from_slice::<super::Policy>(bytes)
        .err()
        .map(|e| e.line());
    let path_err = match serde_path_to_error::deserialize::<_, super::Policy>(&value) {
        Ok(_) => {
            // The tree parse accepted what the byte parse refused; report the byte error.
            let mut err =
                PolicyError::new("", None, PolicyErrorKind::Shape("malformed policy".into()));
            err.line = line;
            return err;
        }
        Err(e) => e,
    };
    let path = path_err.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let rule = rule_id_at(&value, &path);
    let mut err = PolicyError::new(
        path,
        rule.as_deref(),
        PolicyErrorKind::Shape(path_err.into_inner().to_string()),
    );
    err.line = line;
    err
}

/// `rules[3].effects[0]` -> the `id` of `rules[3]`, if it has a string one.
fn rule_id_at(doc: &serde_json::Value, path: &str) -> Option<String> {
    let rest = path.strip_prefix("rules[")?;
    let index: usize = rest.split(']').next()?.parse().ok()?;
    doc.get("rules")?
        .get(index)?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

/// serde_json appends "at line L column C"; the line is reported separately.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}
