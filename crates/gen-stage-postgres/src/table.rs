//! The name of a queue's table, checked once so that it can be put into SQL.

use std::fmt;

/// The name of a queue's table: it also names its dead-letter table (`<name>_dead`),
/// its index (`<name>_due`) and the channel its enqueues notify (`gen_stage_<name>`).
///
/// A name is 1 to 48 characters of lower-case ASCII letters, digits and `_`, not
/// starting with a digit, so that it needs no quoting rules of its own and every
/// derived name stays within PostgreSQL's 63-byte identifiers.
///
/// ```
/// use gen_stage_postgres::QueueTable;
///
/// let table = QueueTable::new("emails")?;
/// assert_eq!(table.name(), "emails");
/// assert!(QueueTable::new("Robert'); DROP TABLE students;--").is_err());
/// # Ok::<(), gen_stage_postgres::TableNameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueueTable(String);

/// The longest table name: derived names add at most 15 characters.
const MAX_LEN: usize = 48;

impl QueueTable {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`TableNameError`] if it is empty, too long, or has a character other than
    /// `a-z`, `0-9` and `_` (or starts with a digit).
    pub fn new(name: impl Into<String>) -> Result<Self, TableNameError> {
        let name = name.into();
        let valid_start = name
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first == '_');
        let valid_rest = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid_start && valid_rest && name.len() <= MAX_LEN {
            Ok(QueueTable(name))
        } else {
            Err(TableNameError { name })
        }
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The queue's table, quoted for SQL.
    pub(crate) fn queue(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// The dead-letter table, quoted for SQL.
    pub(crate) fn dead(&self) -> String {
        format!("\"{}_dead\"", self.0)
    }

    /// The index the claim uses, quoted for SQL.
    pub(crate) fn due_index(&self) -> String {
        format!("\"{}_due\"", self.0)
    }

    /// The channel enqueues notify, quoted for `LISTEN`.
    pub(crate) fn channel(&self) -> String {
        format!("\"{}\"", self.channel_name())
    }

    /// The channel's name, unquoted, as `pg_notify` takes it.
    pub(crate) fn channel_name(&self) -> String {
        format!("gen_stage_{}", self.0)
    }
}

impl fmt::Display for QueueTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A queue table name that [`QueueTable::new`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNameError {
    name: String,
}

impl fmt::Display for TableNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid queue table name {:?}: use 1 to {MAX_LEN} characters of a-z, 0-9 and _, not starting with a digit",
            self.name
        )
    }
}

impl std::error::Error for TableNameError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_need_no_quoting_are_taken_others_are_refused() {
        for good in ["jobs", "_jobs", "jobs_2", &"a".repeat(MAX_LEN)] {
            assert!(QueueTable::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2jobs",
            "Jobs",
            "jobs-2",
            "jobs\"",
            "jö",
            &"a".repeat(MAX_LEN + 1),
        ] {
            let error = QueueTable::new(bad).expect_err(bad);
            assert!(error.to_string().contains("invalid queue table name"));
        }
    }

    #[test]
    fn derived_names_are_quoted() {
        let table = QueueTable::new("jobs").expect("valid");
        assert_eq!(table.queue(), "\"jobs\"");
        assert_eq!(table.dead(), "\"jobs_dead\"");
        assert_eq!(table.due_index(), "\"jobs_due\"");
        assert_eq!(table.channel(), "\"gen_stage_jobs\"");
    }
}
