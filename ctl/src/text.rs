//! Formatting helpers: an aligned-column table, VLAN lists both ways, durations.

use std::fmt::Write as _;

/// A table of left- or right-aligned columns separated by two spaces, header first.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names; a name starting with `>` is right-aligned (numbers).
    pub fn new(columns: &[&'static str]) -> Table {
        Table {
            header: columns.iter().map(|c| c.trim_start_matches('>')).collect(),
            right: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Parse a VLAN list such as `10,20,30-35` (a convenience: the daemon checks the range).
pub fn parse_vlan_list(text: &str) -> Result<Vec<u16>, String> {
    let number = |s: &str| {
        s.trim().parse::<u16>().map_err(|_| {
            format!("{:?} is not a VLAN number (in a list like 10,20,30-35)", s.trim())
        })
    };
    let mut vlans = Vec::new();
    for item in text.split(',') {
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("VLAN range {first}-{last} runs backwards"));
                }
                vlans.extend(first..=last);
            }
            None => vlans.push(number(item)?),
        }
    }
    Ok(vlans)
}

/// A VLAN list in short form: sorted, runs of three or more as `a-b`: `10,20,30-35`.
pub fn format_vlan_list(vlans: &[u16]) -> String {
    let mut sorted = vlans.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j - i >= 2 {
            let _ = write!(out, "{}-{}", sorted[i], sorted[j]);
            i = j + 1;
        } else {
            let _ = write!(out, "{}", sorted[i]);
            i += 1;
        }
    }
    out
}

/// Seconds as `1d 2h 3m 4s`, leading zero units left out (`42s`, `5m 0s`).
pub fn format_duration(secs: u64) -> String {
    let units =
        [(secs / 86_400, "d"), (secs / 3600 % 24, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(units.len() - 1);
    units[first..].iter().map(|(n, u)| format!("{n}{u}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_lists_parse_and_print() {
        assert_eq!(parse_vlan_list("10,20,30-33").unwrap(), vec![10, 20, 30, 31, 32, 33]);
        assert_eq!(parse_vlan_list(" 7 ").unwrap(), vec![7]);
        assert_eq!(parse_vlan_list("5000").unwrap(), vec![5000], "the daemon checks ranges");
        assert!(parse_vlan_list("10,x").unwrap_err().contains("\"x\" is not a VLAN number"));
        assert!(parse_vlan_list("").is_err());
        assert!(parse_vlan_list("70000").is_err());
        assert_eq!(parse_vlan_list("9-3").unwrap_err(), "VLAN range 9-3 runs backwards");

        assert_eq!(format_vlan_list(&[35, 10, 20, 30, 31, 32, 33, 34, 21]), "10,20,21,30-35");
        assert_eq!(format_vlan_list(&[]), "");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(42), "42s");
        assert_eq!(format_duration(300), "5m 0s");
        assert_eq!(format_duration(93_784), "1d 2h 3m 4s");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", ">COUNT", "NOTE"]);
        t.row(vec!["a".into(), "5".into(), "".into()]);
        t.row(vec!["long-name".into(), "12345".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "NAME       COUNT  NOTE\n\
             a              5\n\
             long-name  12345  x\n"
        );
    }
}
