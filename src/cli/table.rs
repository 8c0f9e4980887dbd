//! Plain-text tables and cell formatting for the operator commands. Cells
//! come from the server (error messages, response snippets) and can be long
//! or hold newlines; a table must stay one line per row and aligned anyway.

use std::time::{Duration, UNIX_EPOCH};

/// Cells wider than this are cut, so one long error message cannot push
/// every other column off the screen.
const DEFAULT_MAX_WIDTH: usize = 48;

/// Columns separated by two spaces, widths fitted to the widest cell.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
    max: Vec<usize>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            right: vec![false; headers.len()],
            max: vec![DEFAULT_MAX_WIDTH; headers.len()],
        }
    }

    /// Numbers read better right-aligned.
    pub fn right_align(mut self, columns: &[usize]) -> Table {
        for &c in columns {
            self.right[c] = true;
        }
        self
    }

    /// Lets a column that carries prose (an error) use more room.
    pub fn max_width(mut self, column: usize, width: usize) -> Table {
        self.max[column] = width.max(1);
        self
    }

    /// Adds a row; missing cells are blank and extra cells are ignored, so
    /// a caller's slip shows as an empty cell rather than a panic.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .enumerate()
            .map(|(i, c)| fit(&c, self.max[i]))
            .collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header line and one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                if self.right[i] {
                    text.extend(std::iter::repeat_n(' ', pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// One line, at most `max` characters: control characters become spaces
/// and a cut cell ends in `…` so it is visibly incomplete.
pub fn fit(cell: &str, max: usize) -> String {
    let clean: String = cell
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Unix milliseconds as RFC 3339 UTC to the second, the form the admin API
/// accepts back in `--since`/`--until`. Out-of-range values (a corrupt
/// record) print as the raw number rather than panicking the listing.
pub fn time(ms: u64) -> String {
    // 9999-12-31T23:59:59Z is the last instant RFC 3339 can write.
    const MAX_MS: u64 = 253_402_300_799_999;
    if ms > MAX_MS {
        return ms.to_string();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Bytes in the largest unit that keeps the number under 1024.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Short latencies keep a decimal so a fast call does not read "0 ms".
pub fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Text as a cell: `-` when there is none, or it is empty.
pub fn text(s: Option<&str>) -> String {
    match s {
        None | Some("") => "-".to_string(),
        Some(s) => s.to_string(),
    }
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// A 0..=1 ratio as a percentage with one decimal, `-` when unknown (a
/// target with no attempts yet has no rate).
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) => format!("{:.1}", r * 100.0),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_widest_cell_and_numbers_align_right() {
        let mut t = Table::new(&["ID", "COUNT", "NOTE"]).right_align(&[1]);
        t.row(vec!["a".into(), "7".into(), "".into()]);
        t.row(vec!["longer".into(), "1234".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "ID      COUNT  NOTE\n\
             a           7\n\
             longer   1234  x\n"
        );
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis_and_stay_on_one_line() {
        let mut t = Table::new(&["E"]).max_width(0, 10);
        t.row(vec!["connection refused\nby peer".into()]);
        t.row(vec!["short".into()]);
        let text = t.render();
        assert_eq!(text, "E\nconnectio…\nshort\n");
        assert_eq!(fit("tab\there", 20), "tab here");
        assert_eq!(fit("ünïcödé-wide", 5), "ünïc…");
        assert_eq!(fit("ab   cd", 4), "ab…");
    }

    #[test]
    fn rows_with_missing_or_extra_cells_do_not_panic() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["1".into()]);
        t.row(vec!["1".into(), "2".into(), "3".into()]);
        assert_eq!(t.render(), "A  B\n1\n1  2\n");
        assert!(!t.is_empty());
    }

    #[test]
    fn times_are_rfc3339_utc_seconds() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_763_892_000_999), "2025-11-23T10:00:00Z");
        assert_eq!(time(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn sizes_pick_a_readable_unit() {
        assert_eq!(size(48), "48 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(millis(0.42), "0.4 ms");
        assert_eq!(millis(123.4), "123 ms");
    }

    #[test]
    fn cells() {
        assert_eq!(text(None), "-");
        assert_eq!(text(Some("")), "-");
        assert_eq!(text(Some("HTTP 500")), "HTTP 500");
        assert_eq!(yes_no(true), "yes");
        assert_eq!(percent(Some(0.968)), "96.8");
        assert_eq!(percent(Some(1.0)), "100.0");
        assert_eq!(percent(None), "-");
    }
}
