//! API versions of a route (contract §7): names, the default, each
//! version's upstream, and deprecation dates turned into header values at
//! build time.

use super::Ctx;
use crate::diag::Problem;
use crate::ir::dates::days_from_civil;
use crate::ir::pattern::{Part, Pattern};
use crate::ir::traffic::{DeprecatedIr, VersionIr, VersionsIr};
use crate::spec::{SpecPath, Versions};

/// Checks one version's `service` and `upstream` as a route's own are.
pub(super) type CheckUpstream<'a> = dyn FnMut(
        &mut Ctx<'_>,
        &SpecPath,
        &str,
        &str,
        Option<&Pattern>,
    ) -> (Option<usize>, Option<Vec<Part>>)
    + 'a;

/// Checks `versions:`; `upstream` checks one service and template pair
/// the same way a route's own are checked.
pub(super) fn check_versions(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    v: &Versions,
    pattern: Option<&Pattern>,
    upstream: &mut CheckUpstream<'_>,
) -> Option<VersionsIr> {
    let vendor_ok = !v.vendor.is_empty()
        && v.vendor
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !vendor_ok {
        cx.error(
            &at.key("vendor"),
            Problem::new(
                format!("`{}` is not a media-type vendor", v.vendor),
                "use lowercase letters, digits, `.` and `-`, e.g. `aegis` for `application/vnd.aegis.v1+json`",
            ),
        );
    }
    if v.live.is_empty() {
        cx.error(
            &at.key("live"),
            Problem::new(
                "a versioned route needs at least one live version",
                "list the versions under `live:`, oldest first",
            ),
        );
        return None;
    }
    let mut live = Vec::new();
    let mut ok = vendor_ok;
    for (i, ver) in v.live.iter().enumerate() {
        let vat = at.key("live").index(i);
        if !valid_name(&ver.version) {
            ok = false;
            cx.error(
                &vat.key("version"),
                Problem::new(
                    format!("`{}` is not a version name", ver.version),
                    "use letters, digits, `.`, `_` and `-`, e.g. `2` or `2024-06-01`",
                ),
            );
        }
        if v.live[..i].iter().any(|o| o.version == ver.version) {
            ok = false;
            cx.error(
                &vat.key("version"),
                Problem::new(
                    format!("version `{}` is listed twice", ver.version),
                    "give each live version its own name",
                ),
            );
        }
        let (service, template) = upstream(cx, &vat, &ver.service, &ver.upstream, pattern);
        let deprecated = match &ver.deprecated {
            Some(d) => {
                let dat = vat.key("deprecated");
                let r = check_deprecated(cx, &dat, d, &ver.version);
                ok &= r.is_some();
                r
            }
            None => None,
        };
        match (service, template) {
            (Some(service), Some(template)) => live.push(VersionIr {
                name: ver.version.clone(),
                service,
                upstream_text: ver.upstream.clone(),
                template,
                deprecated,
            }),
            _ => ok = false,
        }
    }
    let default = v.live.iter().position(|x| x.version == v.default);
    if default.is_none() {
        let mut names: Vec<&str> = Vec::new();
        for x in &v.live {
            if !names.contains(&x.version.as_str()) {
                names.push(&x.version);
            }
        }
        cx.error(
            &at.key("default"),
            Problem::new(
                format!("default version `{}` is not live", v.default),
                format!("use one of: {}", names.join(", ")),
            ),
        );
    }
    if !ok {
        return None;
    }
    Some(VersionsIr {
        vendor: v.vendor.clone(),
        default: default?,
        live,
    })
}

/// Names travel in headers and in `v<name>` of a media type.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_deprecated(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    d: &crate::spec::Deprecated,
    name: &str,
) -> Option<DeprecatedIr> {
    let since = cx.check(&at.key("since"), parse_date(&d.since));
    let sunset = match &d.sunset {
        Some(s) => Some(cx.check(&at.key("sunset"), parse_date(s))?),
        None => None,
    };
    let mut ok = true;
    if let (Some(since), Some(sunset)) = (since, sunset) {
        if sunset < since {
            ok = false;
            cx.error(
                &at.key("sunset"),
                Problem::new(
                    "the sunset comes before the deprecation",
                    "a version is deprecated first and retired later",
                ),
            );
        }
    }
    if let Some(link) = &d.link {
        let valid = (link.starts_with("https://") || link.starts_with("http://"))
            && !link.bytes().any(|b| {
                b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'<' | b'>' | b'"')
            });
        if !valid {
            cx.error(
                &at.key("link"),
                Problem::new(
                    format!("`{link}` is not a link a header can carry"),
                    "use an absolute `https://` URL without spaces or `<>\"`",
                ),
            );
            ok = false;
        }
    }
    let gone = d.gone_after_sunset.unwrap_or(false);
    if gone && sunset.is_none() {
        cx.error(
            &at.key("gone_after_sunset"),
            Problem::new(
                "`gone_after_sunset` needs a `sunset` date",
                "add `sunset:`, or remove `gone_after_sunset`",
            ),
        );
        ok = false;
    }
    if let Some(s) = sunset {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if s <= now {
            cx.warn(
                &at.key("sunset"),
                Problem::new(
                    format!(
                        "version `{name}` is past its sunset ({})",
                        d.sunset.as_deref().unwrap_or("")
                    ),
                    if gone {
                        "it answers 410 Gone; remove it from `live` when its callers are gone"
                    } else {
                        "remove it from `live`, or move the sunset"
                    },
                ),
            );
        }
    }
    if !ok {
        return None;
    }
    Some(DeprecatedIr {
        since: since?,
        sunset,
        link: d.link.clone(),
        gone_after_sunset: gone,
    })
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ`, as Unix seconds.
pub fn parse_date(s: &str) -> Result<i64, Problem> {
    let bad = || {
        Problem::new(
            format!("`{s}` is not a date"),
            "write `2026-06-30` or `2026-06-30T12:00:00Z` (UTC)",
        )
    };
    let num = |t: &str| -> Result<i64, Problem> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, dd) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(dd), None) if y.len() == 4 && m.len() == 2 && dd.len() == 2 => {
            (num(y)?, num(m)?, num(dd)?)
        }
        _ => return Err(bad()),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || dd < 1
        || dd > month_days[m as usize - 1]
    {
        return Err(bad());
    }
    let secs = match time {
        None => 0,
        Some(t) => {
            let mut p = t.split(':');
            match (p.next(), p.next(), p.next(), p.next()) {
                (Some(h), Some(mi), Some(se), None)
                    if h.len() == 2 && mi.len() == 2 && se.len() == 2 =>
                {
                    let (h, mi, se) = (num(h)?, num(mi)?, num(se)?);
                    if h > 23 || mi > 59 || se > 59 {
                        return Err(bad());
                    }
                    h * 3600 + mi * 60 + se
                }
                _ => return Err(bad()),
            }
        }
    };
    Ok(days_from_civil(y, m, dd) * 86_400 + secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::dates::imf_fixdate;

    #[test]
    fn dates_round_trip_to_imf_fixdate() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("1994-11-06T08:49:37Z").unwrap(), 784_111_777);
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_date("2024-02-29").unwrap(), 1_709_164_800);
        assert_eq!(imf_fixdate(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00",
            "soon",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
