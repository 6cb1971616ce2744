//! The errors a configuration file can produce. Every one names the file as it was
//! given, the 1-based line and the dotted key path (`channels[2].subscribe`), so an
//! operator can jump straight to the problem; none ever carries a secret value.

use std::fmt;

use super::locate::KeyPath;

/// One broken rule: where, and what is wrong (never the value of a secret).
/// Loading places it in the file (`ConfigError::Invalid`), once all checks
/// have run.
#[derive(Clone, Debug)]
pub(crate) struct Violation {
    pub key: KeyPath,
    pub message: String,
}

/// The violations found so far, so that one run reports them all.
#[derive(Default)]
pub(crate) struct Report(pub(super) Vec<Violation>);

impl Report {
    pub(crate) fn add(&mut self, key: KeyPath, message: impl Into<String>) {
        self.0.push(Violation {
            key,
            message: message.into(),
        });
    }
}

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    /// The file holds no YAML document at all (empty, blank or only comments).
    #[error(
        "{file}: the file is empty (or only comments); refusing to treat it as an all-defaults configuration"
    )]
    Empty { file: String },
    /// The file is valid on its own but would drop what the running
    /// configuration has (see `sections.rs`); only a reload reports this.
    #[error("{file}: {key}: {message}")]
    Reload {
        file: String,
        key: String,
        message: String,
    },
    /// The text is not valid YAML.
    #[error("{file}:{line}: yaml syntax: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// A `${NAME}` refers to an environment variable that is not set.
    #[error(
        "{file}:{line}: {key}: environment variable `{var}` is not set (write `${{{var}:-default}}` to give a default)"
    )]
    UnsetVar {
        file: String,
        line: usize,
        key: String,
        var: String,
    },
    /// A `${...}` expression is malformed.
    #[error("{file}:{line}: {key}: {message}")]
    Interpolation {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
    /// The YAML does not fit the schema: unknown key, wrong type, bad unit, missing key.
    #[error("{file}:{line}: {key}: {message}")]
    Schema {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
    /// The values parse but break a rule (bad scheme, duplicate name, ...).
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, when it points into the file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } | ConfigError::Empty { .. } | ConfigError::Reload { .. } => {
                None
            }
            ConfigError::Syntax { line, .. }
            | ConfigError::UnsetVar { line, .. }
            | ConfigError::Interpolation { line, .. }
            | ConfigError::Schema { line, .. }
            | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The dotted key path (`realtime.history.size`), when the error has one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Empty { .. } | ConfigError::Syntax { .. } => {
                None
            }
            ConfigError::UnsetVar { key, .. }
            | ConfigError::Reload { key, .. }
            | ConfigError::Interpolation { key, .. }
            | ConfigError::Schema { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// Every problem found in one configuration file (validation reports all of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors, in file order where known.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
