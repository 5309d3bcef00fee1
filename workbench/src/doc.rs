//! A small document model rendered twice: Markdown (images linked) and self-contained HTML
//! (SVG images inline), so both reports always hold the same sections.

use std::fmt::Write as _;

#[derive(Debug)]
pub enum Block {
    Heading(u8, String),
    Para(String),
    /// Preformatted text (e.g. the command that made the report).
    Code(String),
    Table {
        headers: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// An image written next to the report as `file`, embedded in HTML as its SVG text.
    Image {
        file: String,
        alt: String,
        svg: String,
    },
}

#[derive(Debug, Default)]
pub struct Doc {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Doc {
    pub fn new(title: impl Into<String>) -> Doc {
        Doc { title: title.into(), blocks: Vec::new() }
    }
    pub fn h(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }
    pub fn p(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(text.into()));
    }
    pub fn code(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Code(text.into()));
    }
    pub fn table(&mut self, headers: &[&str], rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows });
    }
    pub fn image(&mut self, file: impl Into<String>, alt: impl Into<String>, svg: String) {
        self.blocks.push(Block::Image { file: file.into(), alt: alt.into(), svg });
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("# {}\n\n", self.title);
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let _ = writeln!(s, "{} {t}\n", "#".repeat(usize::from(*l) + 1));
                }
                Block::Para(t) => {
                    let _ = writeln!(s, "{t}\n");
                }
                Block::Code(t) => {
                    let _ = writeln!(s, "```\n{t}\n```\n");
                }
                Block::Table { headers, rows } => {
                    let cell = |c: &str| c.replace('|', "\\|");
                    let _ = writeln!(s, "| {} |", headers.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "));
                    let _ = writeln!(s, "|{}", headers.iter().map(|_| "---|").collect::<String>());
                    for r in rows {
                        let _ = writeln!(s, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
                    }
                    s.push('\n');
                }
                Block::Image { file, alt, .. } => {
                    let _ = writeln!(s, "![{alt}]({file})\n");
                }
            }
        }
        s
    }

    pub fn html(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
             body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}}\
             table{{border-collapse:collapse;margin:1em 0;font-size:14px}}th,td{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
             th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
             figure{{margin:1.5em 0}}figure svg{{max-width:100%;height:auto}}pre{{background:#f6f6f6;padding:.6em}}\
             </style></head><body>\n<h1>{}</h1>\n",
            esc(&self.title),
            esc(&self.title)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let _ = writeln!(s, "<h{n}>{}</h{n}>", esc(t), n = l + 1);
                }
                Block::Para(t) => {
                    let _ = writeln!(s, "<p>{}</p>", esc(t));
                }
                Block::Code(t) => {
                    let _ = writeln!(s, "<pre>{}</pre>", esc(t));
                }
                Block::Table { headers, rows } => {
                    s.push_str("<table>\n<tr>");
                    for h in headers {
                        let _ = write!(s, "<th>{}</th>", esc(h));
                    }
                    s.push_str("</tr>\n");
                    for r in rows {
                        s.push_str("<tr>");
                        for c in r {
                            let _ = write!(s, "<td>{}</td>", esc(c));
                        }
                        s.push_str("</tr>\n");
                    }
                    s.push_str("</table>\n");
                }
                Block::Image { alt, svg, .. } => {
                    let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
                    let _ = writeln!(s, "<figure>{body}<figcaption>{}</figcaption></figure>", esc(alt));
                }
            }
        }
        s.push_str("</body></html>\n");
        s
    }
}

pub fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_renderings_hold_every_block() {
        let mut d = Doc::new("A <b> report");
        d.h(1, "KPIs");
        d.table(&["kpi", "value"], vec![vec!["margin|eur".into(), "1".into()]]);
        d.image("costs.png", "costs", "<?xml version=\"1.0\"?><svg width=\"1\"></svg>".into());
        let md = d.markdown();
        assert!(md.contains("## KPIs") && md.contains("| margin\\|eur | 1 |") && md.contains("![costs](costs.png)"));
        let html = d.html();
        assert!(html.contains("<h1>A &lt;b&gt; report</h1>") && html.contains("<h2>KPIs</h2>"));
        assert!(html.contains("<figure><svg width=\"1\"></svg>"), "SVG inline without its XML prolog");
    }
}
