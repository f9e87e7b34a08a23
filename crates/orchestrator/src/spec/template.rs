//! Argv templates: `command:` elements with `{param}` placeholders.

use std::collections::BTreeMap;
use std::fmt;

use nightshift_search::{Params, SearchSpace};

use super::Program;
use super::locate::{Locator, yaml_short};
use crate::error::Result;

/// Placeholders a `command:` may use besides the parameters.
/// `{device}` is what the trial should open (`cuda:0` on a CUDA slot, whose `CUDA_VISIBLE_DEVICES` shows it
/// one GPU); `{gpu_index}` the physical GPU (empty on a CPU slot); `{seed}` the trial's seed.
pub const BUILTIN_PLACEHOLDERS: [&str; 5] = ["trial_number", "trial_dir", "device", "gpu_index", "seed"];

/// One argv element with `{name}` placeholders (`{{` and `}}` are literal braces).
#[derive(Clone, Debug, PartialEq)]
pub struct ArgTemplate {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    Var(String),
}

pub(crate) fn parse_command(value: &serde_yaml::Value, space: &SearchSpace, loc: &Locator<'_>) -> Result<Program> {
    let serde_yaml::Value::Sequence(items) = value else {
        return Err(loc.err(
            "command",
            format!("expected an argv list such as [python, train.py, --lr, \"{{learning_rate}}\"], found {}", yaml_short(value)),
        ));
    };
    if items.is_empty() {
        return Err(loc.err("command", "empty argv: name at least the program"));
    }
    let mut argv = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = match item {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            // `{lr}` unquoted in a YAML flow list is a one-key mapping with a null value: take it as meant.
            serde_yaml::Value::Mapping(m)
                if m.len() == 1 && m.values().all(serde_yaml::Value::is_null) && m.keys().all(|k| k.is_string()) =>
            {
                format!("{{{}}}", m.keys().next().and_then(|k| k.as_str()).unwrap_or_default())
            }
            other => return Err(loc.err("command", format!("argument {i} must be a string, found {}", yaml_short(other)))),
        };
        let template = ArgTemplate::parse(&text).map_err(|m| loc.err("command", format!("argument {i} ({text:?}): {m}")))?;
        for var in template.vars() {
            if space.get(var).is_none() && !BUILTIN_PLACEHOLDERS.contains(&var) {
                let mut valid: Vec<&str> = space.names().collect();
                valid.extend(BUILTIN_PLACEHOLDERS);
                return Err(
                    loc.err("command", format!("unknown placeholder {{{var}}} in argument {i} (valid: {})", valid.join(", ")))
                );
            }
        }
        argv.push(template);
    }
    if argv[0].vars().next().is_some() {
        return Err(loc.err("command", "the program (argument 0) cannot be a placeholder"));
    }
    Ok(Program::Command { argv })
}

impl ArgTemplate {
    /// Text taken as it is (braces included).
    pub fn literal(text: impl Into<String>) -> Self {
        Self { pieces: vec![Piece::Lit(text.into())] }
    }

    /// One placeholder, e.g. `{trial_dir}`.
    pub fn placeholder(name: impl Into<String>) -> Self {
        Self { pieces: vec![Piece::Var(name.into())] }
    }

    /// Parses `--lr={learning_rate}`; `{{`/`}}` are literal braces.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err("unclosed '{' (write {{ for a literal brace)".into()),
                        }
                    }
                    if name.trim().is_empty() {
                        return Err("empty placeholder {}".into());
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var(name.trim().to_string()));
                }
                '}' => return Err("unmatched '}' (write }} for a literal brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Self { pieces })
    }

    /// The placeholder names it uses.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v.as_str()),
            Piece::Lit(_) => None,
        })
    }

    /// Substitutes parameters first, then the built-in placeholders (`vars`).
    pub fn render(&self, params: &Params, vars: &BTreeMap<&str, String>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(v) => match params.get(v) {
                    Some(value) => out.push_str(&value.to_string()),
                    None => out.push_str(vars.get(v.as_str()).map(String::as_str).unwrap_or_default()),
                },
            }
        }
        out
    }
}

impl fmt::Display for ArgTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Lit(s) => f.write_str(&s.replace('{', "{{").replace('}', "}}"))?,
                Piece::Var(v) => write!(f, "{{{v}}}")?,
            }
        }
        Ok(())
    }
}
