//! `Accept` negotiation (RFC 9110 §12.5.1) between the representations we offer.

use http::HeaderValue;

/// The representation of a synthetic answer.
///
/// ```
/// use tower_bad_gateway::render::{Format, RequestInfo};
///
/// let grpc = http::Request::post("/pkg.Svc/M").header("content-type", "application/grpc").body(()).unwrap();
/// assert_eq!(RequestInfo::from_request(&grpc).format(), Format::Grpc);
/// let api = http::Request::get("/").header("accept", "application/problem+json").body(()).unwrap();
/// assert_eq!(RequestInfo::from_request(&api).format(), Format::ProblemJson);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// `text/plain; charset=utf-8`
    Text,
    /// `application/problem+json` (RFC 9457)
    ProblemJson,
    /// The same problem details as `application/json`, for a client that accepts
    /// JSON but not `application/problem+json` (which `application/json` does not
    /// cover).
    Json,
    /// `text/html; charset=utf-8`
    Html,
    /// gRPC trailers-only (`grpc-status`, `grpc-message`)
    Grpc,
}

/// The media type each format is served as: a range selects a format only when it
/// covers that type (RFC 9110 §12.5.1).
const TEXT: (&str, &str) = ("text", "plain");
const HTML: (&str, &str) = ("text", "html");
const PROBLEM_JSON: (&str, &str) = ("application", "problem+json");
const JSON: (&str, &str) = ("application", "json");

/// A score: weight (0..=1000), how specific the matching range was (2 exact,
/// 1 `type/*`, 0 `*/*`), and its position (earlier wins).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    q: u16,
    specificity: u8,
    earlier: std::cmp::Reverse<usize>,
    preference: u8,
}

/// Picks the format for an `Accept` header. Without one, or when nothing we offer is
/// acceptable, `text/plain`: an error answer is still better than a `406`.
pub(crate) fn negotiate(accept: Option<&HeaderValue>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let bytes = accept.as_bytes();
    // On a tie, the earlier in this list wins.
    let candidates = [
        (Format::Text, TEXT, 3u8),
        (Format::Html, HTML, 2),
        (Format::ProblemJson, PROBLEM_JSON, 1),
        (Format::Json, JSON, 0),
    ];
    let mut best: Option<(Score, Format)> = None;
    for (format, types, preference) in candidates {
        let Some((q, specificity, index)) = best_range(bytes, types) else {
            continue;
        };
        if q == 0 {
            continue;
        }
        let score = Score {
            q,
            specificity,
            earlier: std::cmp::Reverse(index),
            preference,
        };
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, format));
        }
    }
    best.map_or(Format::Text, |(_, f)| f)
}

/// The most specific range in `accept` that covers `(ty, sub)`: its weight,
/// specificity and position.
fn best_range(accept: &[u8], (offered_ty, offered_sub): (&str, &str)) -> Option<(u16, u8, usize)> {
    let mut best: Option<(u16, u8, usize)> = None;
    for (index, range) in accept.split(|&b| b == b',').enumerate() {
        let mut parts = range.split(|&b| b == b';');
        let media = trim(parts.next().unwrap_or_default());
        let Some(slash) = media.iter().position(|&b| b == b'/') else {
            continue;
        };
        let (ty, sub) = (&media[..slash], &media[slash + 1..]);
        let same_type = ty.eq_ignore_ascii_case(offered_ty.as_bytes());
        let specificity = if ty == b"*" && sub == b"*" {
            0
        } else if same_type && sub == b"*" {
            1
        } else if same_type && sub.eq_ignore_ascii_case(offered_sub.as_bytes()) {
            2
        } else {
            continue;
        };
        let q = parts.find_map(weight).unwrap_or(1000);
        // The most specific range decides; among equals, the highest weight.
        let better = match best {
            None => true,
            Some((bq, bs, _)) => specificity > bs || (specificity == bs && q > bq),
        };
        if better {
            best = Some((q, specificity, index));
        }
    }
    best
}

/// Parses a `q=` parameter into thousandths; other parameters give `None`.
fn weight(param: &[u8]) -> Option<u16> {
    let param = trim(param);
    let value = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))?;
    let mut digits = value.iter().filter(|b| **b != b'.');
    let int = match value.first() {
        Some(b'0') => 0u16,
        Some(b'1') => return Some(1000),
        _ => return Some(0),
    };
    digits.next();
    let mut q = int;
    for scale in [100u16, 10, 1] {
        match digits.next() {
            Some(d @ b'0'..=b'9') => q += u16::from(d - b'0') * scale,
            Some(_) => return Some(0),
            None => break,
        }
    }
    Some(q)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Format {
        negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn no_accept_or_anything_gets_plain_text() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(pick("*/*"), Format::Text);
        assert_eq!(pick(""), Format::Text);
        assert_eq!(pick("image/png"), Format::Text);
    }

    #[test]
    fn a_browser_gets_html() {
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(pick(firefox), Format::Html);
    }

    #[test]
    fn an_api_client_gets_problem_details_as_a_type_it_accepts() {
        assert_eq!(pick("application/problem+json"), Format::ProblemJson);
        assert_eq!(pick("application/*"), Format::ProblemJson);
        // `application/json` does not cover `application/problem+json`.
        assert_eq!(pick("application/json"), Format::Json);
        // axios' default: JSON first, then anything.
        assert_eq!(pick("application/json, text/plain, */*"), Format::Json);
        assert_eq!(pick("text/plain;q=0.5, application/json"), Format::Json);
        assert_eq!(
            pick("application/problem+json, application/json"),
            Format::ProblemJson
        );
    }

    /// A range that does not cover a type never selects it, and q=0 excludes.
    #[test]
    fn only_types_the_client_accepts_are_served() {
        assert_eq!(pick("application/*"), Format::ProblemJson, "not text/html");
        assert_eq!(
            pick("application/xhtml+xml"),
            Format::Text,
            "nothing offered fits"
        );
        assert_eq!(
            pick("application/problem+json;q=0, application/json"),
            Format::Json
        );
        assert_eq!(pick("text/*, text/plain;q=0"), Format::Html);
    }

    #[test]
    fn weights_and_specificity_decide() {
        assert_eq!(
            pick("application/json;q=0.2, text/html;q=0.9"),
            Format::Html
        );
        // The exact range's q=0 excludes JSON even though */* allows it.
        assert_eq!(pick("application/json;q=0, */*"), Format::Text);
        assert_eq!(pick("text/*;q=0.3, application/json;q=0.4"), Format::Json);
        assert_eq!(pick("TEXT/HTML"), Format::Html);
        assert_eq!(pick("text/html;q=0.000, text/plain;q=0.001"), Format::Text);
    }

    #[test]
    fn malformed_weights_do_not_panic() {
        for accept in [
            "text/html;q=",
            "text/html;q=1.5",
            "text/html;q=abc",
            ";;;,,,/",
            "/",
            "a/b;q=0.99999",
        ] {
            let _ = pick(accept);
        }
    }
}
