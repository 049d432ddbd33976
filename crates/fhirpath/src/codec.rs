//! `encode()`/`decode()` (base64, urlbase64, hex) and `escape()`/
//! `unescape()` (html, json) from FHIRPath 2.0, written out because they
//! are small.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn encode(bytes: &[u8], format: &str) -> Option<String> {
    match format {
        "hex" => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        "base64" => Some(base64(bytes)),
        "urlbase64" => Some(base64(bytes).replace('+', "-").replace('/', "_")),
        _ => None,
    }
}

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn decode(text: &str, format: &str) -> Option<Vec<u8>> {
    match format {
        "hex" => {
            if !text.len().is_multiple_of(2) {
                return None;
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect()
        }
        "base64" | "urlbase64" => {
            let mut bits = 0u32;
            let mut count = 0;
            let mut out = Vec::new();
            for c in text.bytes().filter(|c| *c != b'=') {
                let c = match c {
                    b'-' => b'+',
                    b'_' => b'/',
                    c => c,
                };
                let v = B64.iter().position(|x| *x == c)? as u32;
                bits = (bits << 6) | v;
                count += 6;
                if count >= 8 {
                    count -= 8;
                    out.push((bits >> count) as u8);
                    bits &= (1 << count) - 1;
                }
            }
            Some(out)
        }
        _ => None,
    }
}

pub(crate) fn escape(text: &str, format: &str) -> Option<String> {
    let mut out = String::new();
    for c in text.chars() {
        match (format, c) {
            ("html", '"') => out.push_str("&quot;"),
            ("html", '<') => out.push_str("&lt;"),
            ("html", '>') => out.push_str("&gt;"),
            ("html", '&') => out.push_str("&amp;"),
            ("html", '\'') => out.push_str("&#39;"),
            ("json", '"') => out.push_str("\\\""),
            ("json", '\\') => out.push_str("\\\\"),
            ("json", '\n') => out.push_str("\\n"),
            ("json", '\r') => out.push_str("\\r"),
            ("json", '\t') => out.push_str("\\t"),
            ("html" | "json", c) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

pub(crate) fn unescape(text: &str, format: &str) -> Option<String> {
    match format {
        "html" => Some(
            text.replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#39;", "'")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        ),
        "json" => {
            let mut out = String::new();
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next()? {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    other => out.push(other),
                }
            }
            Some(out)
        }
        _ => None,
    }
}
