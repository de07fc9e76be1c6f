//! Terminal output: tables, colour, and `--json`.

use std::io::IsTerminal;

use serde::Serialize;

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON.
    pub json: bool,
    /// Use ANSI colours.
    pub color: bool,
}

impl Output {
    /// Output settings from flags and the environment.
    pub fn new(json: bool, no_color: bool) -> Self {
        let color = !json
            && !no_color
            && std::env::var_os("NO_COLOR").is_none()
            && std::io::stdout().is_terminal();
        Output { json, color }
    }

    /// Paints `text` with an ANSI colour code when colour is on.
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A status, coloured by its meaning.
    pub fn status(&self, status: &str) -> String {
        let code = match status {
            "COMPLETED" | "active" => "32",
            "FAILED" => "31",
            "CANCELED" | "archived" => "33",
            "RUNNING" => "36",
            _ => "2",
        };
        self.paint(code, status)
    }

    /// Prints a value as JSON, turning `*_json` string fields into nested JSON.
    pub fn print_json<T: Serialize>(&self, value: &T) {
        let value = unwrap_json_fields(serde_json::to_value(value).unwrap_or_default());
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }

    /// Prints a table with a header row.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(visible_len(cell));
            }
        }
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!(
                        "{c}{}",
                        " ".repeat(widths[i].saturating_sub(visible_len(c)))
                    )
                })
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(header.iter().map(|h| self.paint("1", h)).collect());
        for row in rows {
            line(row.clone());
        }
    }

    /// Prints an error to stderr.
    pub fn error(&self, e: &anyhow::Error) {
        let prefix = if std::io::stderr().is_terminal() && self.color {
            "\x1b[31merror:\x1b[0m"
        } else {
            "error:"
        };
        eprintln!("{prefix} {e:#}");
    }
}

/// The length of a string without ANSI escapes.
fn visible_len(s: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

fn unwrap_json_fields(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(k, v)| match (k.strip_suffix("_json"), &v) {
                    (Some(stripped), serde_json::Value::String(s)) => {
                        let parsed = if s.is_empty() {
                            serde_json::Value::Null
                        } else {
                            serde_json::from_str(s).unwrap_or(v.clone())
                        };
                        (stripped.to_string(), parsed)
                    }
                    _ => (k, unwrap_json_fields(v)),
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(unwrap_json_fields).collect())
        }
        other => other,
    }
}

/// A millisecond timestamp as local-free UTC text.
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A text cut to `max` characters.
pub fn cut(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!(
            "{}…",
            one_line
                .chars()
                .take(max.saturating_sub(1))
                .collect::<String>()
        )
    }
}
