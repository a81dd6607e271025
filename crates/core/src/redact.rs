//! Removing credentials from URLs before they reach a log line or an API response.

/// Returns `url` with any `user:pass@` userinfo replaced by `***@`.
///
/// Works on anything URL-shaped, even when it does not parse, because the point is
/// that a malformed URL with a password in it must not leak either.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

/// Redacts the userinfo of every URL inside free text (error messages from
/// GStreamer or the network may quote the URL they failed on).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || "()\"'<>,;".contains(c))
            .unwrap_or(rest.len());
        match rest[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &rest[at + 1..];
            }
            None => {
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_text, redact_url};

    #[test]
    fn redacts_inside_text() {
        assert_eq!(
            redact_text("Could not open (rtsp://admin:pw@10.0.0.1/s) or rtsp://u:p@h:1 now"),
            "Could not open (rtsp://***@10.0.0.1/s) or rtsp://***@h:1 now"
        );
        assert_eq!(redact_text("no url here"), "no url here");
        assert_eq!(redact_text("rtsp://clean/x"), "rtsp://clean/x");
    }

    #[test]
    fn redacts_userinfo() {
        assert_eq!(redact_url("rtsp://admin:s3cret@10.0.0.5:554/h264"), "rtsp://***@10.0.0.5:554/h264");
        assert_eq!(redact_url("rtsp://user@host/x"), "rtsp://***@host/x");
        assert_eq!(redact_url("rtsp://a:b@c@host/x"), "rtsp://***@host/x");
    }

    #[test]
    fn leaves_clean_urls() {
        assert_eq!(redact_url("rtsp://127.0.0.1:8554/cam/1"), "rtsp://127.0.0.1:8554/cam/1");
        assert_eq!(redact_url("rtsp://host/p?x=a@b"), "rtsp://host/p?x=a@b");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
