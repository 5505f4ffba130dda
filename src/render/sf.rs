//! Just enough of RFC 8941 (Structured Field Values) to write `Proxy-Status`.

/// Whether `s` is an sf-token: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
pub(crate) fn is_token(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'*' => {}
        _ => return false,
    }
    bytes.all(|b| is_tchar(b) || b == b':' || b == b'/')
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends `s` as an sf-string: printable ASCII only, `"` and `\` escaped. Other
/// characters (controls, CR, LF, NUL, non-ASCII) become `?`; at most `max` source
/// characters are kept, then `...`.
pub(crate) fn push_string(out: &mut String, s: &str, max: usize) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

/// Appends `s` as an sf-token when it is one, else as an sf-string.
pub(crate) fn push_token_or_string(out: &mut String, s: &str, max: usize) {
    if is_token(s) && s.len() <= max {
        out.push_str(s);
    } else {
        push_string(out, s, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("tower-bad-gateway"));
        assert!(is_token("gw.example.com:8080"));
        assert!(is_token("*"));
        assert!(!is_token(""));
        assert!(!is_token("1proxy"));
        assert!(!is_token("my proxy"));
        assert!(!is_token("a\"b"));
    }

    #[test]
    fn strings_are_escaped_and_never_carry_controls() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\r\nd\0é", 100);
        assert_eq!(out, r#""a\"b\\c??d??""#);
        let mut out = String::new();
        push_string(&mut out, "abcdef", 3);
        assert_eq!(out, r#""abc...""#);
    }
}
