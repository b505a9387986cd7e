//! The data files under `stages/data/sounds/`, one table each: tab-separated columns without
//! quoting, a header row naming them, `#` comment lines and blank lines ignored (what the csv
//! crate reads with a tab delimiter, `#` comments and quoting off). They are compiled in and
//! parsed once, on first use; a malformed row is an error naming the file and the line.
//!
//! The lines are split here rather than by the csv crate because its record positions count
//! from the comment or blank lines before a record, and messages must name the row's own line.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::catalog::Phrase;

/// A data file compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct DataFile {
    /// File name under `stages/data/sounds/`.
    pub name: &'static str,
    pub text: &'static str,
}

/// The [`DataFile`] `stages/data/sounds/<name>`.
macro_rules! data_file {
    ($name:literal) => {
        $crate::sounds::table::DataFile {
            name: $name,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sounds/", $name)),
        }
    };
}
pub(crate) use data_file;

/// One row of a data file.
#[derive(Debug, Clone)]
pub struct Row {
    /// Line in the file, from 1.
    pub line: usize,
    pub fields: Vec<&'static str>,
}

impl DataFile {
    /// `` `stages/data/sounds/<name>` line <n>: <what> ``.
    pub fn error(&self, line: usize, what: impl std::fmt::Display) -> String {
        format!("`stages/data/sounds/{}` line {line}: {what}", self.name)
    }

    /// The rows after the header, which must be `columns` in this order. Every row has one
    /// non-empty field per column, without surrounding spaces (a tab typed as spaces shows up
    /// as a missing field).
    pub fn rows(&self, columns: &[&str]) -> Result<Vec<Row>, String> {
        let mut lines = self
            .text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
        let Some((n, header)) = lines.next() else {
            return Err(format!(
                "`stages/data/sounds/{}` has no header row",
                self.name
            ));
        };
        if !header.split('\t').eq(columns.iter().copied()) {
            return Err(self.error(
                n,
                format!(
                    "the header must be the tab-separated columns {}",
                    columns.join(", ")
                ),
            ));
        }
        lines
            .map(|(line, text)| {
                let fields: Vec<&str> = text.split('\t').collect();
                if fields.len() != columns.len() {
                    return Err(self.error(
                        line,
                        format!(
                            "{} tab-separated fields, expected {} ({})",
                            fields.len(),
                            columns.len(),
                            columns.join(", ")
                        ),
                    ));
                }
                for (field, column) in fields.iter().zip(columns) {
                    if field.is_empty() || field.trim() != *field {
                        return Err(self.error(
                            line,
                            format!("`{column}` is empty or has surrounding spaces: `{field}`"),
                        ));
                    }
                }
                Ok(Row { line, fields })
            })
            .collect()
    }

    /// Row index by the first field; a key given twice is an error naming both lines.
    pub fn index(&self, rows: &[Row]) -> Result<BTreeMap<&'static str, usize>, String> {
        let mut index = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            if let Some(first) = index.insert(row.fields[0], i) {
                return Err(self.error(
                    row.line,
                    format!(
                        "`{}` is listed again (first on line {})",
                        row.fields[0], rows[first].line
                    ),
                ));
            }
        }
        Ok(index)
    }

    /// `animal/mammal/dog` → its levels, each of lower-case ASCII letters.
    pub fn category(&self, line: usize, text: &str) -> Result<Vec<String>, String> {
        let levels: Vec<String> = text.split('/').map(str::to_owned).collect();
        if levels
            .iter()
            .any(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_lowercase()))
        {
            return Err(self.error(
                line,
                format!("category `{text}` is not `/`-separated lower-case words"),
            ));
        }
        Ok(levels)
    }
}

/// A described sound: a row `<key> description phrase category`.
#[derive(Debug, Clone)]
pub struct Sound {
    /// What the package's reader looks up (a title, a resource path, a file stem, ...).
    pub key: &'static str,
    pub description: &'static str,
    pub phrase: Phrase,
    /// Most general first.
    pub category: Vec<String>,
    pub line: usize,
}

/// A package's table of described sounds, in file order.
#[derive(Debug)]
pub struct SoundTable {
    pub file: DataFile,
    rows: Vec<Sound>,
    by_key: BTreeMap<&'static str, usize>,
}

impl SoundTable {
    /// Parses `file`, whose columns are `key` (named as the package calls it), `description`,
    /// `phrase` and `category`.
    pub fn parse(file: DataFile, key: &str) -> Result<Self, String> {
        let rows = file.rows(&[key, "description", "phrase", "category"])?;
        let by_key = file.index(&rows)?;
        let rows = rows
            .into_iter()
            .map(|row| {
                let f = &row.fields;
                Ok(Sound {
                    key: f[0],
                    description: f[1],
                    phrase: f[2].parse().map_err(|e| file.error(row.line, e))?,
                    category: file.category(row.line, f[3])?,
                    line: row.line,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { file, rows, by_key })
    }

    pub fn get(&self, key: &str) -> Option<&Sound> {
        self.by_key.get(key).map(|&i| &self.rows[i])
    }

    pub fn rows(&self) -> &[Sound] {
        &self.rows
    }
}

/// A table parsed on first use, or the message saying why it could not be.
pub type Lazy<T> = LazyLock<Result<T, String>>;

pub fn loaded<T>(table: &'static Lazy<T>) -> anyhow::Result<&'static T> {
    table.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &'static str) -> DataFile {
        DataFile {
            name: "test.tsv",
            text,
        }
    }

    #[test]
    fn rows_skip_comments_and_keep_their_lines() {
        let f = file(
            "# about\n\nstem\tdescription\tphrase\tcategory\n# note\nwolf\ta wolf\tevent\tanimal/mammal/dog\r\n\ncrow\ta crow\tsource\tanimal/bird\n",
        );
        let t = SoundTable::parse(f, "stem").unwrap();
        let crow = t.get("crow").unwrap();
        assert_eq!((crow.line, crow.description), (7, "a crow"));
        assert_eq!(crow.phrase, Phrase::Source);
        assert_eq!(t.get("wolf").unwrap().category, ["animal", "mammal", "dog"]);
        assert_eq!(t.rows().len(), 2);
        assert!(t.get("a wolf").is_none());
    }

    #[test]
    fn malformed_rows_name_the_file_and_the_line() {
        let err = |text: &'static str| SoundTable::parse(file(text), "stem").unwrap_err();
        let header = "# c\nstem\tdescription\tphrase\tcategory\n";
        let cases = [
            (
                "stem description phrase category\n",
                "line 1: the header must be",
            ),
            (
                "# c\nstem\tdescription\tphrase\n",
                "line 2: the header must be the tab-separated columns stem, description, phrase, category",
            ),
            (
                "a\ta b  event\tx\n",
                "line 3: 3 tab-separated fields, expected 4",
            ),
            ("a\t\tevent\tx\n", "line 3: `description` is empty"),
            (
                "a\t a b\tevent\tx\n",
                "line 3: `description` is empty or has surrounding spaces: ` a b`",
            ),
            (
                "a\ta b\tevnt\tx\n",
                "line 3: phrase `evnt` is neither `event` nor `source`",
            ),
            ("a\ta b\tevent\tx/\n", "line 3: category `x/` is not"),
            ("a\ta b\tevent\tX\n", "line 3: category `X` is not"),
            (
                "a\ta b\tevent\tx\n\nb\tb\tevent\tx\na\tc\tevent\tx\n",
                "line 6: `a` is listed again (first on line 3)",
            ),
        ];
        for (body, want) in cases {
            let text: &'static str = if body.starts_with("stem ") || body.starts_with("# c") {
                body
            } else {
                format!("{header}{body}").leak()
            };
            let msg = err(text);
            assert!(
                msg.starts_with("`stages/data/sounds/test.tsv` ") && msg.contains(want),
                "{msg}"
            );
        }
        assert_eq!(
            err("# only\n\n"),
            "`stages/data/sounds/test.tsv` has no header row"
        );
    }
}
