//! Regular time series: a start, a step and values. Parsing checks that the steps are
//! regular and complete, so that a model never sees a gap it would silently misread.

use crate::duration::format_duration;
use crate::timefmt::{format_rfc3339, parse_rfc3339};
use conductor_core::time::{DAY, HOUR};
use conductor_core::Millis;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesError {
    #[error("{source_name}: {message}")]
    Input { source_name: String, message: String },
    #[error("{source_name}:{line}: {message}")]
    Line { source_name: String, line: usize, message: String },
}

/// A regular series: `values[i]` is the value of the step starting at `start + i × step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub start: Millis,
    pub step: Millis,
    pub values: Vec<f64>,
}

/// Seasonal periods of a series, in steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub day: usize,
    pub week: usize,
}

impl Series {
    pub fn new(name: impl Into<String>, start: Millis, step: Millis, values: Vec<f64>) -> Series {
        assert!(step > 0, "a series step is positive");
        Series { name: name.into(), start, step, values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The instant after the last step.
    pub fn end(&self) -> Millis {
        self.start + self.step * self.values.len() as Millis
    }

    pub fn time(&self, i: usize) -> Millis {
        self.start + self.step * i as Millis
    }

    /// Index of the step starting at `t` (which must lie on the grid), clamped to the series.
    pub fn index_at(&self, t: Millis) -> usize {
        ((t - self.start).max(0) / self.step).min(self.values.len() as Millis) as usize
    }

    /// The part of the series in `[from, to)` (on the grid).
    pub fn slice(&self, from: Millis, to: Millis) -> Series {
        let (a, b) = (self.index_at(from), self.index_at(to));
        Series::new(self.name.clone(), self.time(a), self.step, self.values[a..b.max(a)].to_vec())
    }

    /// Daily and weekly periods in steps; the step must divide a day.
    pub fn periods(&self) -> Result<Periods, String> {
        if DAY % self.step != 0 {
            return Err(format!(
                "the step {} does not divide a day, so daily and weekly seasons have no whole number of steps",
                format_duration(self.step)
            ));
        }
        let day = (DAY / self.step) as usize;
        Ok(Periods { day, week: 7 * day })
    }

    /// Checks that the series can carry a weekly season: at least two whole weeks.
    pub fn check_weekly_history(&self) -> Result<Periods, String> {
        let p = self.periods()?;
        if self.values.len() < 2 * p.week {
            return Err(format!(
                "{}: too little history for a weekly season: needs at least 2 weeks ({} steps of {}), has {} ({:.1} days)",
                self.name,
                2 * p.week,
                format_duration(self.step),
                self.values.len(),
                (self.values.len() as i64 * self.step) as f64 / DAY as f64
            ));
        }
        Ok(p)
    }

    /// Parses `timestamp,value` CSV text (header row required; RFC 3339 timestamps). The
    /// step is inferred from the first two rows; every later row must follow it exactly.
    pub fn parse_csv(source_name: &str, name: &str, text: &str) -> Result<Series, SeriesError> {
        let line_err =
            |line: usize, message: String| SeriesError::Line { source_name: source_name.into(), line, message };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(SeriesError::Input { source_name: source_name.into(), message: "empty file".into() });
        };
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        if columns.len() != 2 || columns[1].parse::<f64>().is_ok() {
            return Err(line_err(1, format!("expected a header `timestamp,value`, got {header:?}")));
        }
        let mut start = None;
        let mut step = None;
        let mut prev: Option<Millis> = None;
        let mut values = Vec::new();
        for (line, row) in lines {
            let mut fields = row.split(',');
            let (Some(t), Some(v), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(line_err(line, format!("expected two fields `timestamp,value`, got {row:?}")));
            };
            let t = parse_rfc3339(t.trim()).map_err(|m| line_err(line, m))?;
            let v: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| line_err(line, format!("expected a number, got {:?}", v.trim())))?;
            match (prev, step) {
                (None, _) => start = Some(t),
                (Some(p), None) => {
                    if t <= p {
                        return Err(line_err(line, "timestamps must increase".into()));
                    }
                    step = Some(t - p);
                }
                (Some(p), Some(s)) => {
                    let d = t - p;
                    if d != s {
                        let message = if d > 0 && d % s == 0 {
                            format!(
                                "gap: {} missing step(s) between {} and {} (step {})",
                                d / s - 1,
                                format_rfc3339(p),
                                format_rfc3339(t),
                                format_duration(s)
                            )
                        } else {
                            format!(
                                "irregular step: {} after the previous row, expected {}",
                                if d > 0 { format_duration(d) } else { format!("{d} ms") },
                                format_duration(s)
                            )
                        };
                        return Err(line_err(line, message));
                    }
                }
            }
            prev = Some(t);
            values.push(v);
        }
        let (Some(start), Some(step)) = (start, step) else {
            return Err(SeriesError::Input {
                source_name: source_name.into(),
                message: "needs at least two rows to infer the step".into(),
            });
        };
        if step > HOUR * 24 {
            return Err(SeriesError::Input {
                source_name: source_name.into(),
                message: format!("step {} is longer than a day", format_duration(step)),
            });
        }
        Ok(Series::new(name, start, step, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Series, String> {
        Series::parse_csv("load.csv", "load", text).map_err(|e| e.to_string())
    }

    #[test]
    fn infers_the_step_and_reads_values() {
        let s = parse("timestamp,value\n2025-01-01T00:00:00Z,1\n2025-01-01T00:15:00Z,2.5\n2025-01-01T00:30:00Z,3\n")
            .unwrap();
        assert_eq!(s.step, 15 * 60_000);
        assert_eq!(s.values, vec![1.0, 2.5, 3.0]);
        assert_eq!(s.periods().unwrap(), Periods { day: 96, week: 672 });
    }

    #[test]
    fn bad_input_is_named_by_line() {
        let h = "timestamp,value\n";
        let e =
            parse(&format!("{h}2025-01-01T00:00:00Z,1\n2025-01-01T00:15:00Z,2\n2025-01-01T00:45:00Z,3\n")).unwrap_err();
        assert!(e.contains("load.csv:4: gap: 1 missing step(s) between 2025-01-01T00:15:00Z"), "{e}");
        let e =
            parse(&format!("{h}2025-01-01T00:00:00Z,1\n2025-01-01T00:15:00Z,2\n2025-01-01T00:20:00Z,3\n")).unwrap_err();
        assert!(e.contains("load.csv:4: irregular step: 5m after the previous row, expected 15m"), "{e}");
        let e = parse(&format!("{h}2025-01-01T00:00:00Z,1\n2025-01-01T00:15:00Z,lots\n")).unwrap_err();
        assert!(e.contains("load.csv:3: expected a number, got \"lots\""), "{e}");
        let e = parse(&format!("{h}2025-01-01T00:00:00Z,1\n2025-01-01T00:15:00Z,NaN\n")).unwrap_err();
        assert!(e.contains("load.csv:3: expected a number"), "{e}");
        let e = parse(&format!("{h}yesterday,1\n")).unwrap_err();
        assert!(e.contains("load.csv:2: expected an RFC 3339 timestamp"), "{e}");
        let e = parse("2025-01-01T00:00:00Z,1\n").unwrap_err();
        assert!(e.contains("expected a header"), "{e}");
        let e = parse(&format!("{h}2025-01-01T00:00:00Z,1\n")).unwrap_err();
        assert!(e.contains("at least two rows"), "{e}");
    }

    #[test]
    fn weekly_seasons_need_two_weeks() {
        let s = Series::new("x", 0, HOUR, vec![1.0; 24 * 10]);
        let e = s.check_weekly_history().unwrap_err();
        assert!(e.contains("needs at least 2 weeks (336 steps of 1h), has 240 (10.0 days)"), "{e}");
        assert!(Series::new("x", 0, HOUR, vec![1.0; 336]).check_weekly_history().is_ok());
        assert!(Series::new("x", 0, 7 * 60_000, vec![1.0; 10]).periods().is_err());
    }
}
