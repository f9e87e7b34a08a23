//! Where a field sits in the spec text, for errors that name `file:line:column`.

use nightshift_search::space::locate_key;

use super::FieldError;
use crate::error::Error;

/// Finds where fields live in the spec text, for error messages.
pub(crate) struct Locator<'a> {
    pub(crate) origin: &'a str,
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    /// `file:line:column` of a dotted field path (`budget.timeout`), falling back to the nearest
    /// parent that is found, then to the file name.
    pub(crate) fn at(&self, path: &str) -> String {
        let mut from_line = 0usize;
        let mut found = None;
        for segment in path.split('.') {
            let rest: String = self.text.lines().skip(from_line).collect::<Vec<_>>().join("\n");
            match locate_key(&rest, segment) {
                Some((line, col)) => {
                    from_line += line - 1;
                    found = Some((from_line + 1, col));
                }
                None => break,
            }
        }
        match found {
            Some((line, col)) => format!("{}:{line}:{col}", self.origin),
            None => self.origin.to_string(),
        }
    }

    pub(crate) fn err(&self, field: &str, message: impl Into<String>) -> Error {
        Error::Spec { location: self.at(field), field: field.to_string(), message: message.into() }
    }

    pub(crate) fn field_err(&self, e: FieldError) -> Error {
        self.err(&e.field, e.message)
    }
}

/// A YAML value in a few words, for messages.
pub(crate) fn yaml_short(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::Null => "nothing".into(),
        serde_yaml::Value::Bool(b) => format!("`{b}`"),
        serde_yaml::Value::Number(n) => format!("`{n}`"),
        serde_yaml::Value::String(s) => format!("\"{s}\""),
        serde_yaml::Value::Sequence(_) => "a list".into(),
        serde_yaml::Value::Mapping(_) => "a mapping".into(),
        serde_yaml::Value::Tagged(_) => "a tagged value".into(),
    }
}
