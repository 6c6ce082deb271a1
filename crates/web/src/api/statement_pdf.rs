//! The commission statement as a PDF: the rows of the CSV statement
//! (`programs::commissions::statement_page`, the caller's scope) as a table on A4 landscape
//! pages, for a partner to file or print. Written with krilla in pure Rust; the text is set in
//! Liberation Sans (SIL OFL 1.1, `crates/web/assets/fonts`), which krilla subsets and embeds with
//! a ToUnicode map, so the amounts can be searched and extracted from the file.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use programs::commissions::StatementLine;

use crate::ui::format;

static REGULAR: LazyLock<Option<Font>> = LazyLock::new(|| {
    let data: &'static [u8] = include_bytes!("../../assets/fonts/LiberationSans-Regular.ttf");
    Font::new(data.into(), 0)
});
static BOLD: LazyLock<Option<Font>> = LazyLock::new(|| {
    let data: &'static [u8] = include_bytes!("../../assets/fonts/LiberationSans-Bold.ttf");
    Font::new(data.into(), 0)
});

/// A4 landscape, in points.
const WIDTH: f32 = 841.89;
const HEIGHT: f32 = 595.28;
const MARGIN: f32 = 36.0;
const ROW: f32 = 15.0;
const SIZE: f32 = 9.0;
/// Table rows per page after the page's heading.
const ROWS_PER_PAGE: usize = 30;

/// The columns: title and left edge.
const COLUMNS: [(&str, f32); 8] = [
    ("Closed", MARGIN),
    ("Opportunity", 100.0),
    ("Product", 300.0),
    ("Deal value", 400.0),
    ("Rate", 500.0),
    ("Bonus", 550.0),
    ("Commission", 640.0),
    ("Status", 740.0),
];

/// What the statement is of: the heading of every page.
pub(crate) struct Heading {
    pub organisation: String,
    pub partner: String,
    /// `YYYY-MM`.
    pub period: String,
    pub generated: DateTime<Utc>,
}

/// Why a PDF could not be written (the embedded fonts, or krilla refusing the document): never
/// the caller's fault, so the handler answers 500 and logs this.
#[derive(Debug, thiserror::Error)]
#[error("statement PDF: {0}")]
pub(crate) struct PdfError(String);

/// Renders `lines` (oldest first, as the CSV) under `heading`, with totals per currency.
pub(crate) fn render(heading: &Heading, lines: &[StatementLine]) -> Result<Vec<u8>, PdfError> {
    let regular = REGULAR.clone().ok_or_else(|| PdfError("the embedded regular font does not load".into()))?;
    let bold = BOLD.clone().ok_or_else(|| PdfError("the embedded bold font does not load".into()))?;
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(format!("Commission statement: {}, {}", heading.partner, heading.period))
            .creator("Countersign".to_owned())
            .language("en-GB".to_owned()),
    );
    let settings = || PageSettings::from_wh(WIDTH, HEIGHT).ok_or_else(|| PdfError("page size".into()));
    let chunks: Vec<&[StatementLine]> =
        if lines.is_empty() { vec![&[][..]] } else { lines.chunks(ROWS_PER_PAGE).collect() };
    let pages = chunks.len();
    for (n, chunk) in chunks.iter().enumerate() {
        let mut page = document.start_page_with(settings()?);
        let mut s = page.surface();
        let mut y = MARGIN + 14.0;
        text(&mut s, &bold, 14.0, MARGIN, y, &format!("Commission statement: {}", heading.partner));
        y += 18.0;
        let sub = format!(
            "{} · {} · generated {} UTC · page {} of {pages}",
            heading.organisation,
            heading.period,
            heading.generated.format("%Y-%m-%d %H:%M"),
            n + 1
        );
        text(&mut s, &regular, SIZE, MARGIN, y, &sub);
        y += 24.0;
        for (title, x) in COLUMNS {
            text(&mut s, &bold, SIZE, x, y, title);
        }
        rule(&mut s, y + 4.0);
        y += ROW;
        if chunk.is_empty() {
            text(&mut s, &regular, SIZE, MARGIN, y, "No commissions were calculated for this partner in this month.");
        }
        for l in *chunk {
            let cells = [
                l.created_at.format("%Y-%m-%d").to_string(),
                clip(&l.opportunity_name, 36),
                clip(&l.product, 18),
                money(i128::from(l.base_minor), &l.currency),
                format!("{}.{:02} %", l.rate_bp / 100, (l.rate_bp % 100).abs()),
                money(i128::from(l.bonus_minor), &l.currency),
                money(i128::from(l.amount_minor), &l.currency),
                status(&l.status).to_owned(),
            ];
            for ((_, x), cell) in COLUMNS.iter().zip(&cells) {
                text(&mut s, &regular, SIZE, *x, y, cell);
            }
            y += ROW;
        }
        if n + 1 == pages && !lines.is_empty() {
            rule(&mut s, y - ROW + 4.0);
            y += 4.0;
            for (currency, total) in totals(lines) {
                text(&mut s, &bold, SIZE, COLUMNS[3].1, y, &format!("Total commission ({currency})"));
                text(&mut s, &bold, SIZE, COLUMNS[6].1, y, &money(total, &currency));
                y += ROW;
            }
        }
        s.finish();
        page.finish();
    }
    document.finish().map_err(|e| PdfError(format!("{e:?}")))
}

/// Sums of the commission per currency (i128: no sum of i64 amounts can overflow it).
fn totals(lines: &[StatementLine]) -> BTreeMap<String, i128> {
    let mut t = BTreeMap::new();
    for l in lines {
        *t.entry(l.currency.clone()).or_insert(0) += i128::from(l.amount_minor);
    }
    t
}

/// An amount in major units with its code, as the pages show it (`1,600.00 EUR`).
fn money(minor: i128, currency: &str) -> String {
    match i64::try_from(minor) {
        Ok(m) => format!("{} {currency}", format::amount(m, currency)),
        // Only a total of many huge amounts gets here: the minor units, exactly.
        Err(_) => format!("{minor} minor units {currency}"),
    }
}

fn status(s: &str) -> &'static str {
    match s {
        "calculated" => "Calculated",
        "approved" => "Approved",
        "payable" => "Payable",
        "paid" => "Paid",
        "disputed" => "Disputed",
        _ => "Other",
    }
}

/// At most `max` characters, an ellipsis marking the cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

fn text(s: &mut Surface<'_>, font: &Font, size: f32, x: f32, y: f32, t: &str) {
    s.set_fill(Some(Fill::default()));
    s.draw_text(Point::from_xy(x, y), font.clone(), size, t, false, TextDirection::Auto);
}

/// A thin grey line across the table.
fn rule(s: &mut Surface<'_>, y: f32) {
    let Some(rect) = Rect::from_xywh(MARGIN, y, WIDTH - 2.0 * MARGIN, 0.6) else { return };
    let mut pb = PathBuilder::new();
    pb.push_rect(rect);
    if let Some(path) = pb.finish() {
        s.set_fill(Some(Fill { paint: rgb::Color::new(160, 160, 160).into(), ..Fill::default() }));
        s.draw_path(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn line(amount_minor: i64, currency: &str) -> StatementLine {
        StatementLine {
            id: Uuid::now_v7(),
            partner_id: Uuid::now_v7(),
            opportunity_id: Uuid::now_v7(),
            opportunity_name: "Contoso rollout".into(),
            product: "suite".into(),
            currency: currency.into(),
            base_minor: 2_000_000,
            rate_bp: 750,
            bonus_minor: 10_000,
            amount_minor,
            status: "paid".into(),
            created_at: Utc::now(),
            approved_at: None,
            paid_at: None,
        }
    }

    #[test]
    fn a_statement_is_a_pdf_with_totals_per_currency_and_amounts_in_major_units() {
        let h = Heading {
            organisation: "Vendor".into(),
            partner: "Partner A".into(),
            period: "2026-12".into(),
            generated: Utc::now(),
        };
        let lines: Vec<_> = (0..65).map(|i| line(1_000 + i, if i % 2 == 0 { "EUR" } else { "JPY" })).collect();
        let pdf = render(&h, &lines).expect("pdf");
        assert!(pdf.starts_with(b"%PDF-"));
        let t = totals(&lines);
        assert_eq!(t["EUR"], (0..65).filter(|i| i % 2 == 0).map(|i| i128::from(1_000 + i)).sum::<i128>());
        assert_eq!(money(160_000, "EUR"), "1,600.00 EUR");
        assert_eq!(money(i128::from(i64::MAX) + 1, "EUR"), "9223372036854775808 minor units EUR");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert!(render(&h, &[]).expect("empty").starts_with(b"%PDF-"));
    }
}
