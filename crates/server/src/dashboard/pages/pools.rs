//! Autoscaled pools: their sizes and recent decisions on the workers page, and a chart of
//! desired against actual workers per pool on the overview.

use std::fmt::Write as _;

use spillway_core::api::PoolStatus;

use crate::dashboard::Samples;
use crate::dashboard::html::{self, esc, multiline};

/// The pools table and, below it, each pool's recent decisions; empty without pools.
pub fn section(pools: &[PoolStatus]) -> String {
    if pools.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section aria-labelledby=\"p-h\"><h2 id=\"p-h\">Pools</h2>\
         <div class=\"table-wrap\"><table data-live=\"pools\"><thead><tr><th scope=\"col\">Pool</th>\
         <th scope=\"col\">Provider</th><th scope=\"col\">Tier</th><th scope=\"col\">Min – max</th>\
         <th scope=\"col\">Desired / actual</th><th scope=\"col\">Busy</th><th scope=\"col\">Idle</th>\
         <th scope=\"col\">Draining</th><th scope=\"col\">Down</th><th scope=\"col\">Problems</th>\
         </tr></thead><tbody>",
    );
    for p in pools {
        let problems = if p.problems.is_empty() {
            "–".to_string()
        } else {
            p.problems
                .iter()
                .map(|x| esc(x))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = write!(
            out,
            "<tr data-pool=\"{0}\"><th scope=\"row\">{0}</th><td>{1}</td><td>{2}</td><td>{3} – {4}</td>\
             <td><span data-field=\"desired\">{5}</span> / <span data-field=\"actual\">{6}</span></td>\
             <td>{7}</td><td>{8}</td><td>{9}</td><td>{10}</td><td>{problems}</td></tr>",
            esc(&p.name),
            esc(&p.provider),
            p.tier,
            p.min,
            p.max,
            p.desired,
            p.actual,
            p.busy,
            p.idle,
            p.draining,
            p.down,
        );
    }
    out.push_str("</tbody></table></div>");
    for p in pools {
        let _ = write!(out, "<h3>Recent decisions of {}</h3>", esc(&p.name));
        if p.decisions.is_empty() {
            out.push_str("<p>None yet.</p>");
            continue;
        }
        out.push_str(
            "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Time</th>\
             <th scope=\"col\">From → to</th><th scope=\"col\">Reason</th></tr></thead><tbody>",
        );
        // Newest first: the latest decision is what explains the pool's size now.
        for d in p.decisions.iter().rev() {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
                html::time(d.at),
                d.from,
                d.to,
                esc(&d.reason)
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</section>");
    out
}

/// The overview's pools: per pool, desired against actual workers over the last hour.
pub fn charts(pools: &[PoolStatus], samples: &Samples) -> String {
    if pools.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section aria-labelledby=\"pc-h\"><h2 id=\"pc-h\">Pools</h2>\
         <div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Pool</th>\
         <th scope=\"col\">Desired / actual</th><th scope=\"col\">Last hour (solid desired, dashed actual)</th>\
         </tr></thead><tbody>",
    );
    for p in pools {
        let got = samples.of_pool(&p.name);
        let desired: Vec<f64> = got.iter().map(|s| f64::from(s.desired)).collect();
        let actual: Vec<f64> = got.iter().map(|s| f64::from(s.actual)).collect();
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><a href=\"/workers\">{}</a></th><td>{} / {}</td><td>{}</td></tr>",
            esc(&p.name),
            p.desired,
            p.actual,
            multiline(
                &[&desired, &actual],
                &format!("desired and actual workers of pool {}, last hour", p.name)
            ),
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}
