//! The bodies of a synthetic answer: plain text, RFC 9457 problem+json, and HTML.

use super::proxy_status::MAX_DETAILS;
use super::{DEFAULT_HTML_TEMPLATE, Renderer, RequestInfo};
use crate::error::GatewayError;
use bytes::Bytes;
use http::StatusCode;
use std::fmt::Write;

/// The kind's sentence, the next hop and the cause: for answers with details exposed.
pub(crate) fn message_with_details(err: &GatewayError) -> String {
    let mut out = String::from(err.kind().description());
    if let Some(hop) = err.next_hop() {
        let _ = write!(out, " Upstream: {hop}.");
    }
    let chain = err.source_chain();
    if !chain.is_empty() {
        out.push_str(" Cause: ");
        out.extend(chain.chars().take(MAX_DETAILS));
    }
    out
}

/// What a body describes: a failure of the gateway, or an upstream's own error
/// answer it intercepted (which has no error type and nothing to expose).
pub(crate) struct Subject<'a> {
    message: &'a str,
    error: Option<&'static str>,
    err: Option<&'a GatewayError>,
}

impl<'a> Subject<'a> {
    pub(crate) fn failure(err: &'a GatewayError) -> Self {
        Self {
            message: err.kind().description(),
            error: Some(err.kind().as_str()),
            err: Some(err),
        }
    }

    /// An upstream's own error answer, replaced by the gateway's page.
    pub(crate) fn upstream(status: StatusCode) -> Self {
        Self {
            message: if status.is_server_error() {
                "The upstream server failed to complete the request."
            } else {
                "The upstream server could not process the request."
            },
            error: None,
            err: None,
        }
    }

    /// The error with details to show, when details are exposed.
    fn exposed(&self, r: &Renderer) -> Option<&'a GatewayError> {
        self.err.filter(|_| r.expose_details)
    }
}

/// The `text/plain` body.
pub(crate) fn text(
    r: &Renderer,
    err: &GatewayError,
    info: &RequestInfo,
    status: StatusCode,
) -> Bytes {
    text_of(r, &Subject::failure(err), info, status)
}

pub(crate) fn text_of(
    r: &Renderer,
    what: &Subject<'_>,
    info: &RequestInfo,
    status: StatusCode,
) -> Bytes {
    let mut out = String::with_capacity(128);
    let _ = write!(
        out,
        "{} {}\n\n{}\n\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        what.message,
    );
    if let Some(error) = what.error {
        let _ = writeln!(out, "error: {error}");
    }
    if let Some(id) = info.request_id_str() {
        let _ = writeln!(out, "request id: {id}");
    }
    if let Some(err) = what.exposed(r) {
        let _ = writeln!(out, "details: {}", message_with_details(err));
    }
    Bytes::from(out)
}

/// The RFC 9457 `application/problem+json` body.
pub(crate) fn problem_json(
    r: &Renderer,
    err: &GatewayError,
    info: &RequestInfo,
    status: StatusCode,
) -> Bytes {
    problem_json_of(r, &Subject::failure(err), info, status)
}

pub(crate) fn problem_json_of(
    r: &Renderer,
    what: &Subject<'_>,
    info: &RequestInfo,
    status: StatusCode,
) -> Bytes {
    let mut out = String::with_capacity(192);
    // "about:blank" with the status phrase as title, RFC 9457 §4.2.1; our
    // specifics go in extension members.
    let _ = write!(
        out,
        r#"{{"type":"about:blank","title":"{}","status":{},"detail":"{}""#,
        status.canonical_reason().unwrap_or("Error"),
        status.as_u16(),
        what.message,
    );
    if let Some(error) = what.error {
        let _ = write!(out, r#","error":"{error}""#);
    }
    if let Some(id) = info.request_id_str() {
        out.push_str(r#","request_id":"#);
        push_json_string(&mut out, id);
    }
    if let Some(err) = what.exposed(r) {
        if let Some(hop) = err.next_hop() {
            out.push_str(r#","next_hop":"#);
            push_json_string(&mut out, hop.as_str());
        }
        out.push_str(r#","cause":"#);
        push_json_string(&mut out, &err.source_chain());
    }
    out.push('}');
    Bytes::from(out)
}

/// The HTML page: the template with its placeholders filled in, HTML-escaped.
pub(crate) fn html(
    r: &Renderer,
    err: &GatewayError,
    info: &RequestInfo,
    status: StatusCode,
) -> Bytes {
    html_of(r, &Subject::failure(err), info, status)
}

pub(crate) fn html_of(
    r: &Renderer,
    what: &Subject<'_>,
    info: &RequestInfo,
    status: StatusCode,
) -> Bytes {
    let template = r.html_template.as_deref().unwrap_or(DEFAULT_HTML_TEMPLATE);
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = &after[1..close];
        let mut value = String::new();
        let known = match name {
            "status" => write!(value, "{}", status.as_u16()).is_ok(),
            "reason" => {
                value.push_str(status.canonical_reason().unwrap_or("Error"));
                true
            }
            "message" => {
                value.push_str(what.message);
                true
            }
            "error" => {
                value.push_str(what.error.unwrap_or_default());
                true
            }
            "request_id" => {
                if let Some(id) = info.request_id_str() {
                    let _ = write!(value, " · request id {id}");
                }
                true
            }
            "details" => {
                if let Some(err) = what.exposed(r) {
                    out.push_str("<pre>");
                    push_html_escaped(&mut out, &message_with_details(err));
                    out.push_str("</pre>");
                }
                true
            }
            _ => false,
        };
        if known {
            push_html_escaped(&mut out, &value);
        } else {
            out.push_str(&after[..=close]);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Bytes::from(out)
}

fn push_html_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
