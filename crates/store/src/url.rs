//! Storage URLs as users write them, and the same URLs with their password hidden.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// A parsed storage URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    /// A SQLite file: `sqlite:///relative.db`, `sqlite:////abs/path.db`, or a plain path.
    Sqlite(PathBuf),
    /// A private in-memory SQLite database: `sqlite://` or `sqlite:///:memory:`.
    SqliteMemory,
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
}

impl StorageUrl {
    /// Parses a URL the way SQLAlchemy (and so Optuna) reads it: after `sqlite://` comes an
    /// empty host and `/`, then the path, so three slashes start a relative path and four an
    /// absolute one. Anything without `://` is a file path.
    pub fn parse(url: &str) -> Result<Self> {
        // The URL may hold a password even when it is not a PostgreSQL one: never echo it.
        let invalid = |reason: &str| Error::InvalidUrl { url: redact_url(url), reason: reason.to_string() };
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty; give sqlite:///file.db or a file path"));
        }
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            if let Some(rest) = trimmed.strip_prefix("sqlite:") {
                return Err(invalid(&format!(
                    "a SQLite URL starts with sqlite:/// (relative path) or sqlite://// (absolute path), e.g. sqlite:///{rest}"
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(trimmed)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres(trimmed.to_string())),
            "sqlite" => {
                if rest.contains('?') {
                    return Err(invalid("query parameters (?…) are not supported for SQLite"));
                }
                if rest.is_empty() {
                    return Ok(Self::SqliteMemory);
                }
                let Some(path) = rest.strip_prefix('/') else {
                    return Err(invalid(
                        "a SQLite URL has no host: use sqlite:///relative/path.db (three slashes) or sqlite:////absolute/path.db (four)",
                    ));
                };
                match path {
                    "" => Err(invalid("the file path is missing: use sqlite:///file.db")),
                    ":memory:" => Ok(Self::SqliteMemory),
                    path => Ok(Self::Sqlite(PathBuf::from(path))),
                }
            }
            other => Err(invalid(&format!(
                "unsupported scheme '{other}' (supported: sqlite:///relative.db, sqlite:////abs/path.db, a plain file path, postgres://user@host/db)"
            ))),
        }
    }
}

/// A URL with its password replaced by `***`, for error messages and logs.
///
/// Covers `postgres://user:secret@host/db` and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..].find(['/', '?']).map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_sqlalchemy() {
        let sqlite = |p: &str| StorageUrl::Sqlite(PathBuf::from(p));
        assert_eq!(StorageUrl::parse("sqlite:///x.db").unwrap(), sqlite("x.db"));
        assert_eq!(StorageUrl::parse("sqlite:///runs/x.db").unwrap(), sqlite("runs/x.db"));
        assert_eq!(StorageUrl::parse("sqlite:////abs/x.db").unwrap(), sqlite("/abs/x.db"));
        assert_eq!(StorageUrl::parse("SQLite:///x.db").unwrap(), sqlite("x.db"));
        assert_eq!(StorageUrl::parse("x.db").unwrap(), sqlite("x.db"));
        assert_eq!(StorageUrl::parse("/tmp/dir/x.db").unwrap(), sqlite("/tmp/dir/x.db"));
        assert_eq!(StorageUrl::parse(" ./x.db ").unwrap(), sqlite("./x.db"));
        assert_eq!(StorageUrl::parse("sqlite://").unwrap(), StorageUrl::SqliteMemory);
        assert_eq!(StorageUrl::parse("sqlite:///:memory:").unwrap(), StorageUrl::SqliteMemory);
        assert_eq!(StorageUrl::parse("postgresql://u@h/db").unwrap(), StorageUrl::Postgres("postgresql://u@h/db".into()));
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        let message = |url: &str| StorageUrl::parse(url).unwrap_err().to_string();
        assert!(message("").contains("empty"));
        assert!(message("sqlite:x.db").contains("sqlite:///x.db"));
        assert!(message("sqlite://host/x.db").contains("three slashes"));
        assert!(message("sqlite:///").contains("path is missing"));
        assert!(message("sqlite:///x.db?timeout=5").contains("query parameters"));
        assert!(message("mysql://u@h/db").contains("unsupported scheme 'mysql'"));
        let mysql = message("mysql://u:hunter2@h/db");
        assert!(mysql.contains("mysql://u:***@h/db") && !mysql.contains("hunter2"), "{mysql}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://ana:s3cr%40t@db.example:5432/hp"), "postgres://ana:***@db.example:5432/hp");
        assert_eq!(redact_url("postgresql://ana@db/hp"), "postgresql://ana@db/hp");
        assert_eq!(
            redact_url("postgres://db/hp?user=ana&password=pw&sslmode=disable"),
            "postgres://db/hp?user=ana&password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://a:b@h/db?Password=x"), "postgres://a:***@h/db?Password=***");
    }
}
