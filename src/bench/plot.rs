//! The latency distribution of each run as an SVG picture (`--plot FILE`),
//! for people who would rather look than read: one curve per transport,
//! latency against percentile, the percentile axis stretched towards the
//! tail (50, 90, 99, 99.9 %) as HDR histogram plots are, because the tail is
//! where transports differ. Hand-written SVG: no plotting dependency.

use std::fmt::Write;

use super::Report;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
/// Percentile axis: x = log10(1 / (1 - q)), from q = 0 to q = 0.9999.
const X_MAX: f64 = 4.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// The SVG document for `reports` (runs without deliveries are left out).
pub fn svg(reports: &[Report]) -> String {
    let top_ms = reports
        .iter()
        .filter(|r| !r.histogram.is_empty())
        .map(|r| r.histogram.value_at_quantile(0.9999) as f64 / 1000.0)
        .fold(0.0, f64::max);
    let y_max = nice_ceiling(top_ms.max(0.001));
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |q: f64| LEFT + (1.0 / (1.0 - q)).log10().min(X_MAX) / X_MAX * pw;
    let y = |ms: f64| TOP + ph - (ms / y_max).min(1.0) * ph;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">Publish-to-delivery latency by percentile</text>
"#,
        LEFT + pw / 2.0
    );
    // Axes, grid and labels.
    for (q, label) in [
        (0.0, "0%"),
        (0.5, "50%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
    ] {
        let gx = x(q);
        let _ = writeln!(
            out,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 16.0
        );
    }
    for k in 0..=4 {
        let ms = y_max * k as f64 / 4.0;
        let gy = y(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            gy + 4.0,
            trim(ms)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">ms</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 10.0,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // One curve per run.
    for (k, r) in reports
        .iter()
        .filter(|r| !r.histogram.is_empty())
        .enumerate()
    {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<String> = (0..=200)
            .map(|i| {
                let q = 1.0 - 10f64.powf(-X_MAX * i as f64 / 200.0);
                let ms = r.histogram.value_at_quantile(q) as f64 / 1000.0;
                format!("{:.1},{:.1}", x(q), y(ms))
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + 18.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} (p99 {:.2} ms)</text>"#,
            WIDTH - RIGHT + 10.0,
            WIDTH - RIGHT + 30.0,
            WIDTH - RIGHT + 35.0,
            ly + 4.0,
            r.transport,
            r.latency_ms.p99
        );
    }
    out.push_str("</svg>\n");
    out
}

/// 1, 2 or 5 times a power of ten, at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let base = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * base)
}

fn trim(ms: f64) -> String {
    let s = format!("{ms:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Latency;
    use hdrhistogram::Histogram;

    fn report(transport: &'static str, values_us: &[u64]) -> Report {
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in values_us {
            histogram.record(*v).unwrap();
        }
        Report {
            transport,
            subscribers: 1,
            connected: 1,
            sockets: 1,
            messages: values_us.len(),
            expected: values_us.len() as u64,
            delivered: values_us.len() as u64,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            msgs_per_sec: 0.0,
            latency_ms: Latency {
                avg: 0.0,
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
                p99: 0.0,
                max: 0.0,
            },
            memory_per_connection_kib: None,
            server_latency_ms: None,
            publish_errors: 0,
            refused: Vec::new(),
            seconds: 0.0,
            histogram,
        }
    }

    #[test]
    fn one_curve_per_run_with_data_and_the_axis_fits_the_tail() {
        let runs = [
            report("ws", &[1000, 2000, 3000]),
            report("sse", &[1500, 7000]),
            report("poll", &[]),
        ];
        let svg = svg(&runs);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">ws (p99") && svg.contains(">sse (p99"));
        assert!(!svg.contains(">poll"));
        // 7 ms tail → a 10 ms axis.
        assert!(svg.contains(">10</text>"), "{svg}");
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
    }
}
