//! HTML building blocks: escaping, the page shell, and small shared widgets.
//!
//! Pages are plain strings built with `write!`; every value that did not come from this
//! file goes through [`esc`] (or [`Html`]'s `text`) first.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use spillway_core::auth::{Action, Principal};
use spillway_core::state::StateCounts;

/// Escape text for HTML element content and double-quoted attribute values.
pub fn esc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a value for a URL path segment or query value.
pub fn url(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The pager under a list paged on the server: "First page" once past the first page
/// (`paged`), "Next page" while `next` (the list's `next_cursor`) leads on. Both links go to
/// `path` (already a URL path) and keep the `filters` (name and raw value pairs) of the list.
pub fn pager(
    path: &str,
    label: &str,
    filters: &[(&str, &str)],
    paged: bool,
    next: Option<&str>,
) -> String {
    let keep: String = filters
        .iter()
        .map(|(k, v)| format!("&{k}={}", url(v)))
        .collect();
    let mut out = format!("<nav class=\"pager\" aria-label=\"{}\">", esc(label));
    if paged {
        let _ = write!(
            out,
            "<a href=\"{path}?{}\">First page</a>",
            keep.trim_start_matches('&')
        );
    }
    if let Some(next) = next {
        let _ = write!(
            out,
            "<a href=\"{path}?cursor={}{keep}\" rel=\"next\">Next page</a>",
            url(next)
        );
    }
    out.push_str("</nav>");
    out
}

/// Percent-encode a relative path, keeping its `/` separators.
pub fn url_path(path: &str) -> String {
    path.split('/').map(url).collect::<Vec<_>>().join("/")
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC` in a `<time>` element.
pub fn time(at: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        at.to_rfc3339(),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// A duration in seconds as a short human string (`42s`, `3m 5s`, `2h 1m`).
pub fn secs(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// A state name as a coloured badge; `field` names it for live updates.
pub fn badge(state: &str) -> String {
    let state = esc(state);
    format!("<span class=\"badge s-{state}\" data-field=\"state\">{state}</span>")
}

/// A progress bar of finished tasks over all, with the counts behind it: an SVG whose parts'
/// sizes are attributes, not inline styles, so the Content-Security-Policy needs no
/// `'unsafe-inline'` for it.
pub fn progress(counts: &StateCounts, total: u32) -> String {
    let total = u64::from(total).max(1);
    let mut parts = String::new();
    let mut x = 0.0;
    for (class, n) in [
        ("p-succeeded", counts.succeeded),
        ("p-dead", counts.dead),
        ("p-cancelled", counts.cancelled),
        ("p-leased", counts.leased),
    ] {
        let width = n as f64 * 100.0 / total as f64;
        let _ = write!(
            parts,
            "<rect class=\"{class}\" x=\"{x:.2}\" width=\"{width:.2}\" height=\"1\"/>"
        );
        x += width;
    }
    format!(
        "<svg class=\"progress\" viewBox=\"0 0 100 1\" preserveAspectRatio=\"none\" role=\"img\" data-field=\"progress\" aria-label=\"{done} of {total} tasks finished\">{parts}</svg>",
        done = counts.finished(),
    )
}

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The overview.
    Overview,
    /// Jobs and one job.
    Jobs,
    /// Queues.
    Queues,
    /// Pools and workers.
    Workers,
    /// Dead letters.
    Dead,
    /// The submit form.
    Submit,
    /// None (sign-in, errors).
    None,
}

/// The page shell: head, navigation for `who`, the body, and the live-update script.
pub fn page(title: &str, nav: Nav, who: Option<(&Principal, &str)>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Spillway</title>\
         <link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a><header class=\"top\">\
         <a class=\"brand\" href=\"/\">Spillway</a>",
        esc(title)
    );
    if let Some((principal, csrf)) = who {
        out.push_str("<nav aria-label=\"Main\"><ul>");
        let mut item = |href: &str, label: &str, this: Nav| {
            let current = if nav == this {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(out, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        };
        item("/", "Overview", Nav::Overview);
        item("/jobs", "Jobs", Nav::Jobs);
        item("/queues", "Queues", Nav::Queues);
        item("/workers", "Pools &amp; workers", Nav::Workers);
        item("/dead", "Dead letters", Nav::Dead);
        if principal.role.allows(Action::Submit) {
            item("/submit", "Submit", Nav::Submit);
        }
        let tenant = principal.tenant.as_deref().unwrap_or("all tenants");
        let _ = write!(
            out,
            "</ul></nav><form class=\"who\" method=\"post\" action=\"/logout\">\
             <span>{} · {}</span>{}<button type=\"submit\">Sign out</button></form>",
            esc(tenant),
            principal.role.as_str(),
            csrf_field(csrf)
        );
    }
    let _ = write!(
        out,
        "</header><main id=\"main\"><h1>{}</h1>\
         <p class=\"live\" role=\"status\" aria-live=\"polite\" hidden></p>{body}</main></body></html>",
        esc(title)
    );
    out
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"_csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A one-button POST form (cancel, retry, requeue), with its CSRF field.
pub fn post_button(action: &str, label: &str, csrf: &str, hidden: &[(&str, &str)]) -> String {
    let mut out = format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}",
        esc(action),
        csrf_field(csrf)
    );
    for (name, value) in hidden {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    let _ = write!(
        out,
        "<button type=\"submit\">{}</button></form>",
        esc(label)
    );
    out
}

/// A notice shown above a page's content (after an action).
pub fn flash(message: &str) -> String {
    format!("<p class=\"flash\" role=\"status\">{}</p>", esc(message))
}

/// An inline SVG line chart of `points` (oldest first), with an accessible label.
pub fn sparkline(points: &[f64], label: &str) -> String {
    const W: f64 = 120.0;
    const H: f64 = 28.0;
    if points.len() < 2 {
        return format!(
            "<span class=\"spark-empty\" title=\"{}\">collecting…</span>",
            esc(label)
        );
    }
    let max = points.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let step = W / (points.len() - 1) as f64;
    let mut path = String::new();
    for (i, v) in points.iter().enumerate() {
        let x = i as f64 * step;
        let y = H - 1.0 - (v / max) * (H - 2.0);
        let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
    }
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">\
         <title>{}</title><path d=\"{path}\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\"/></svg>",
        esc(label),
        esc(label)
    )
}

/// An inline SVG chart of several series on one scale (oldest first; the first drawn solid,
/// the others dashed), with an accessible label.
pub fn multiline(series: &[&[f64]], label: &str) -> String {
    const W: f64 = 120.0;
    const H: f64 = 28.0;
    let len = series.iter().map(|s| s.len()).max().unwrap_or(0);
    if len < 2 {
        return format!(
            "<span class=\"spark-empty\" title=\"{}\">collecting…</span>",
            esc(label)
        );
    }
    let max = series
        .iter()
        .flat_map(|s| s.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let step = W / (len - 1) as f64;
    let mut paths = String::new();
    for (n, points) in series.iter().enumerate() {
        let mut path = String::new();
        for (i, v) in points.iter().enumerate() {
            let x = i as f64 * step;
            let y = H - 1.0 - (v / max) * (H - 2.0);
            let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
        }
        let dash = if n == 0 {
            ""
        } else {
            " stroke-dasharray=\"3 2\""
        };
        let _ = write!(
            paths,
            "<path d=\"{path}\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\"{dash}/>"
        );
    }
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">\
         <title>{}</title>{paths}</svg>",
        esc(label),
        esc(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pager_keeps_the_filters_on_both_links() {
        let first = pager("/dead", "Pages", &[("queue", "a b")], false, Some("c/1"));
        assert_eq!(
            first,
            "<nav class=\"pager\" aria-label=\"Pages\">\
             <a href=\"/dead?cursor=c%2F1&queue=a%20b\" rel=\"next\">Next page</a></nav>"
        );
        let last = pager("/jobs", "Pages", &[("state", "failed")], true, None);
        assert_eq!(
            last,
            "<nav class=\"pager\" aria-label=\"Pages\"><a href=\"/jobs?state=failed\">First page</a></nav>"
        );
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(url("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(url_path("dir/a b.txt"), "dir/a%20b.txt");
    }

    #[test]
    fn sparklines_need_two_points_and_scale_to_the_box() {
        assert!(sparkline(&[1.0], "x").contains("collecting"));
        let svg = sparkline(&[0.0, 10.0, 5.0], "tasks <waiting>");
        assert!(svg.contains("M0.0,27.0 L60.0,1.0 L120.0,14.0"), "{svg}");
        assert!(svg.contains("tasks &lt;waiting&gt;"));
    }

    #[test]
    fn multiline_charts_share_one_scale_and_dash_the_second_series() {
        assert!(multiline(&[&[1.0], &[1.0]], "x").contains("collecting"));
        let svg = multiline(&[&[0.0, 4.0], &[2.0, 2.0]], "pool <p>");
        assert!(svg.contains("d=\"M0.0,27.0 L120.0,1.0\""), "{svg}");
        assert!(
            svg.contains("d=\"M0.0,14.0 L120.0,14.0\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" stroke-dasharray"),
            "{svg}"
        );
        assert!(svg.contains("pool &lt;p&gt;"));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(secs(42.4), "42s");
        assert_eq!(secs(185.0), "3m 5s");
        assert_eq!(secs(7260.0), "2h 1m");
    }
}
