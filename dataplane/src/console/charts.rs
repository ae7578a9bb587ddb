//! Charts drawn on the server as SVG: no script, no library, and nothing
//! the CSP has to allow. Colours come from classes in the stylesheet; each
//! chart has a text summary for screen readers and its numbers in a table
//! one click away.

use maud::{Markup, html};

use super::layout;

/// One series of a chart: its name, its CSS class, a value per hour.
pub struct Series<'a> {
    /// Shown in the legend and the table.
    pub name: &'a str,
    /// `ok`, `bad`… (colours in the stylesheet).
    pub class: &'a str,
    /// One value per hour, oldest first.
    pub values: &'a [i64],
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const AXIS: f64 = 20.0;

/// Stacked bars, one per hour from `start` (Unix ms).
pub fn hourly_bars(title: &str, start: i64, series: &[Series<'_>]) -> Markup {
    let hours = series.first().map_or(0, |s| s.values.len());
    let labels: Vec<String> = (0..hours)
        .map(|h| {
            let ms = start + i64::try_from(h).unwrap_or(0) * 3_600_000;
            let text = crate::routes::rfc3339(ms);
            text.get(11..16).unwrap_or("").to_owned()
        })
        .collect();
    bars(title, "hour", &labels, series)
}

/// Stacked bars, one per slot (an hour, a day…) named by `labels` (UTC),
/// oldest first; `unit` names a slot in words.
pub fn bars(title: &str, unit: &str, labels: &[String], series: &[Series<'_>]) -> Markup {
    let slots = labels.len();
    let totals: Vec<i64> = (0..slots)
        .map(|h| {
            series
                .iter()
                .map(|s| s.values.get(h).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let slot = if slots == 0 {
        WIDTH
    } else {
        WIDTH / slots as f64
    };
    // Six labels along the axis at most, so that they never overlap.
    let tick_every = slots.div_ceil(6).max(1);
    let plot = HEIGHT - AXIS;
    let summary = series
        .iter()
        .map(|s| format!("{} {}", s.values.iter().sum::<i64>(), s.name))
        .collect::<Vec<_>>()
        .join(", ");
    let label = |h: usize| labels.get(h).map_or("", String::as_str);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
                aria-label={ (title) ", last " (slots) " " (unit) "s: " (summary) " (highest " (unit) ": " (max) ")" } {
                line.axis x1="0" y1=(plot) x2=(WIDTH) y2=(plot) {}
                @for h in 0..slots {
                    @let x = h as f64 * slot + slot * 0.15;
                    @let mut top = plot;
                    @for s in series {
                        @let v = s.values.get(h).copied().unwrap_or(0);
                        @if v > 0 {
                            @let height = v as f64 / max as f64 * (plot - 4.0);
                            @let y = { top -= height; top };
                            rect class=(s.class) x=(fmt(x)) y=(fmt(y)) width=(fmt(slot * 0.7)) height=(fmt(height)) {
                                title { (label(h)) " UTC: " (v) " " (s.name) }
                            }
                        }
                    }
                    @if h % tick_every == 0 {
                        text.tick x=(fmt(x)) y=(HEIGHT - 4.0) { (label(h)) }
                    }
                }
            }
            ul.legend {
                @for s in series {
                    li { span class={ "swatch " (s.class) } {} (s.name) ": " (s.values.iter().sum::<i64>()) }
                }
            }
            details {
                summary { "Numbers" }
                (layout::table(title, html! {
                    table {
                        thead { tr { th scope="col" { (capitalized(unit)) " (UTC)" } @for s in series { th scope="col" { (s.name) } } } }
                        tbody {
                            @for h in (0..slots).rev() {
                                @if totals.get(h).copied().unwrap_or(0) > 0 {
                                    tr {
                                        th scope="row" { (label(h)) }
                                        @for s in series { td { (s.values.get(h).copied().unwrap_or(0)) } }
                                    }
                                }
                            }
                        }
                    }
                }))
            }
        }
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A meter: `used` of `limit`, as a bar and in words.
pub fn meter(label: &str, used: u64, limit: u64) -> Markup {
    let limit = limit.max(1);
    let share = (used.min(limit) as f64 / limit as f64) * 100.0;
    let class = if share >= 90.0 {
        "bad"
    } else if share >= 60.0 {
        "warn"
    } else {
        "ok"
    };
    html! {
        div.meter {
            span.meter-label { (label) ": " (used) " of " (limit) " used" }
            // Stretched to the width it is given (a bar, not a picture).
            svg viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label={ (label) ": " (used) " of " (limit) " used" } {
                rect.track x="0" y="0" width="100" height="8" {}
                rect class=(class) x="0" y="0" width=(fmt(share)) height="8" {}
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_hour_and_say_so_in_words() {
        let sent = [0, 4, 2];
        let failed = [0, 0, 1];
        let svg = hourly_bars(
            "Emails",
            0,
            &[
                Series {
                    name: "sent",
                    class: "ok",
                    values: &sent,
                },
                Series {
                    name: "failed",
                    class: "bad",
                    values: &failed,
                },
            ],
        )
        .into_string();
        assert!(svg.contains("6 sent, 1 failed"), "{svg}");
        assert!(svg.contains("highest hour: 4"));
        assert!(svg.contains("Hour (UTC)"));
        // The busiest hour fills the plot: 140 - 4 = 136 units high.
        assert!(svg.contains("height=\"136.0\""), "{svg}");
        assert!(!svg.contains("style="), "no inline style under the CSP");
    }

    #[test]
    fn meters_warn_as_the_budget_runs_out() {
        assert!(
            meter("api", 95, 100)
                .into_string()
                .contains("class=\"bad\"")
        );
        assert!(meter("api", 1, 100).into_string().contains("class=\"ok\""));
    }
}
