//! Every command's printing, in one place: human tables by default, and on request
//! (`--output`/`-o`) the same answer as JSON, YAML, a wider table, or ids alone.
//!
//! A command says what its rows are ([`Column`]s, some of them only in `wide`), how a row is
//! named (its id) and which value the machine formats print; [`Printer`] decides how.

use clap::ValueEnum;
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// How a command prints its answer (`--output`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table (or lines) for people.
    #[default]
    Table,
    /// The table with extra columns.
    Wide,
    /// Pretty JSON, for scripts (as `--json`).
    Json,
    /// YAML, for scripts and people.
    Yaml,
    /// Only the ids, one per line (for `xargs`).
    Name,
}

/// One column of a table: its header, whether only `wide` shows it, and its cell.
pub struct Column<T> {
    /// The header, in capitals.
    pub header: &'static str,
    /// Shown only with `--output wide`.
    pub wide: bool,
    /// The cell of a row.
    pub cell: fn(&T) -> String,
}

impl<T> Column<T> {
    /// A column every table shows.
    pub const fn new(header: &'static str, cell: fn(&T) -> String) -> Self {
        Self {
            header,
            wide: false,
            cell,
        }
    }

    /// A column only `--output wide` shows.
    pub const fn wide(header: &'static str, cell: fn(&T) -> String) -> Self {
        Self {
            header,
            wide: true,
            cell,
        }
    }
}

/// Prints answers in the format asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Printer {
    /// The format asked for.
    pub format: Format,
}

impl Printer {
    /// A printer for `format`; `--json` alone means [`Format::Json`].
    pub fn new(format: Option<Format>, json: bool) -> Self {
        let format = match (format, json) {
            (Some(format), _) => format,
            (None, true) => Format::Json,
            (None, false) => Format::Table,
        };
        Self { format }
    }

    /// True for the formats meant for programs (JSON, YAML, names): commands then print no
    /// hints, progress or other words for people on stdout.
    pub fn is_machine(&self) -> bool {
        matches!(self.format, Format::Json | Format::Yaml | Format::Name)
    }

    /// True for JSON or YAML, whose answer is a whole value.
    pub fn is_structured(&self) -> bool {
        matches!(self.format, Format::Json | Format::Yaml)
    }

    /// Print `value` as JSON or YAML (as asked; JSON for the other formats).
    pub fn value<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        print!("{}", self.render_value(value)?);
        Ok(())
    }

    fn render_value<T: Serialize>(&self, value: &T) -> anyhow::Result<String> {
        Ok(match self.format {
            Format::Yaml => serde_yaml::to_string(value)?,
            _ => format!("{}\n", serde_json::to_string_pretty(value)?),
        })
    }

    /// Print a list: `whole` (the answer as the API gave it, e.g. a page) for JSON and YAML,
    /// the name of each row for `name`, else a table of `columns` (the wide ones with
    /// `wide`) followed by the `hints` for people.
    pub fn list<W: Serialize, T>(
        &self,
        whole: &W,
        rows: &[T],
        columns: &[Column<T>],
        name: fn(&T) -> String,
        hints: &[String],
    ) -> anyhow::Result<()> {
        print!("{}", self.render_list(whole, rows, columns, name, hints)?);
        Ok(())
    }

    fn render_list<W: Serialize, T>(
        &self,
        whole: &W,
        rows: &[T],
        columns: &[Column<T>],
        name: fn(&T) -> String,
        hints: &[String],
    ) -> anyhow::Result<String> {
        match self.format {
            Format::Json | Format::Yaml => self.render_value(whole),
            Format::Name => Ok(rows.iter().map(|r| format!("{}\n", name(r))).collect()),
            Format::Table | Format::Wide => {
                let mut text = self.table_text(rows, columns);
                for hint in hints {
                    text.push_str(hint);
                    text.push('\n');
                }
                Ok(text)
            }
        }
    }

    /// `rows` as a table of `columns` (the wide ones too with `wide`), ending in a newline.
    pub fn table_text<T>(&self, rows: &[T], columns: &[Column<T>]) -> String {
        let wide = self.format == Format::Wide;
        let shown: Vec<&Column<T>> = columns.iter().filter(|c| wide || !c.wide).collect();
        let headers: Vec<&str> = shown.iter().map(|c| c.header).collect();
        let mut out = table(&headers);
        for row in rows {
            out.add_row(shown.iter().map(|c| (c.cell)(row)).collect::<Vec<_>>());
        }
        format!("{out}\n")
    }

    /// Print one thing: `value` for JSON and YAML, `name` for `name`, else `human` (for
    /// `table` and `wide` alike).
    pub fn show<T: Serialize>(
        &self,
        value: &T,
        name: &str,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        match self.format {
            Format::Json | Format::Yaml => self.value(value),
            Format::Name => {
                println!("{name}");
                Ok(())
            }
            Format::Table | Format::Wide => {
                print!("{}", human());
                Ok(())
            }
        }
    }

    /// Print what an action did: `value` for JSON and YAML, `name` for `name`, else the
    /// sentence `message`.
    pub fn done<T: Serialize>(&self, value: &T, name: &str, message: &str) -> anyhow::Result<()> {
        self.show(value, name, || format!("{message}\n"))
    }
}

/// A table with a header row, fitted to the terminal.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}

/// A timestamp for people: local-free, second precision.
pub fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional value, or a dash.
pub fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Labels as `k=v, k=v`, or a dash.
pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration in seconds for people ("1.2s", "3m04s").
pub fn seconds(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        id: String,
        extra: u32,
    }

    const COLUMNS: &[Column<Row>] = &[
        Column::new("ID", |r| r.id.clone()),
        Column::wide("EXTRA", |r| r.extra.to_string()),
    ];

    fn rows() -> Vec<Row> {
        vec![
            Row {
                id: "a".into(),
                extra: 1,
            },
            Row {
                id: "b".into(),
                extra: 2,
            },
        ]
    }

    fn render(format: Format) -> String {
        let rows = rows();
        Printer { format }
            .render_list(&rows, &rows, COLUMNS, |r| r.id.clone(), &["more".into()])
            .unwrap()
    }

    #[test]
    fn wide_adds_the_wide_columns_and_table_leaves_them_out() {
        let table = render(Format::Table);
        assert!(table.contains("ID") && !table.contains("EXTRA"), "{table}");
        assert!(table.ends_with("more\n"), "{table}");
        let wide = render(Format::Wide);
        assert!(wide.contains("EXTRA"), "{wide}");
    }

    #[test]
    fn name_prints_ids_one_per_line_and_nothing_else() {
        assert_eq!(render(Format::Name), "a\nb\n");
    }

    #[test]
    fn json_and_yaml_print_the_whole_value_and_read_back() {
        let json: serde_json::Value = serde_json::from_str(&render(Format::Json)).unwrap();
        assert_eq!(json[1]["extra"], 2);
        let yaml: serde_json::Value = serde_yaml::from_str(&render(Format::Yaml)).unwrap();
        assert_eq!(yaml[0]["id"], "a");
    }

    #[test]
    fn json_flag_is_an_alias_and_output_wins() {
        assert_eq!(Printer::new(None, true).format, Format::Json);
        assert_eq!(Printer::new(Some(Format::Yaml), true).format, Format::Yaml);
        assert_eq!(Printer::new(None, false).format, Format::Table);
    }
}
