//! Removing credentials from URLs before they reach a log line, an error, an API
//! response or a database column: one redaction for every URL (RTSP, PostgreSQL,
//! MQTT, webhooks).
//!
//! A redacted URL keeps only `scheme://host:port/path`: user info becomes `***@`,
//! and the query and fragment are dropped, since cameras, brokers and webhook
//! receivers carry credentials there too (`?user=&password=`, `?token=`). It works
//! on anything URL-shaped, even what does not parse, because a malformed URL with
//! a password in it must not leak either; when in doubt it removes more.

/// `url` reduced to `scheme://host:port/path` (see the module).
///
/// The user info ends at the *last* `@` followed by something host-shaped, since
/// a password may hold `/`, `?`, `#` or `@` (`postgres://u:pa/ss@db/x` →
/// `postgres://***@db/x`); a host part that still holds `user:password`-like text
/// is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

/// Redacts every URL inside free text (error messages from GStreamer, sqlx or an
/// HTTP client quote the URL they failed on). A URL runs from its `scheme://` to
/// the next white space or quote; trailing `)`, `,`, `;`, `.` and `:` are left as
/// text.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest.find(|c: char| c.is_whitespace() || "\"'<>".contains(c)).unwrap_or(rest.len());
        let token = rest[..end].trim_end_matches([')', ',', ';', '.', ':']);
        out.push_str(&redact_after_scheme(token));
        rest = &rest[token.len()..];
    }
    out.push_str(rest);
    out
}

/// Whether `c` may appear in a host and port (names, IPv4, `[IPv6]`, `%zone`).
fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ".-_:[]%".contains(c)
}

/// The part of a URL after `://`, redacted.
fn redact_after_scheme(t: &str) -> String {
    let cut = |s: &str| s.find(['/', '?', '#']).unwrap_or(s.len());
    let at = t.rmatch_indices('@').map(|(i, _)| i).find(|&i| {
        let after = &t[i + 1..];
        let h = &after[..cut(after)];
        !h.is_empty() && h.chars().all(host_char)
    });
    let (userinfo, after) = match at {
        Some(i) => (true, &t[i + 1..]),
        None => (false, t),
    };
    let host_end = cut(after);
    let host = &after[..host_end];
    let path = &after[host_end..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    // `user:password` left in the host position (no host after it was found).
    let host_ok = match host.rsplit_once(':') {
        Some((h, port)) => port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') || host.starts_with('['),
        None => true,
    };
    let mut out = String::with_capacity(t.len().min(host.len() + path.len() + 4));
    if userinfo {
        out.push_str("***@");
    }
    out.push_str(if host_ok && host.chars().all(host_char) { host } else { "***" });
    out.push_str(path);
    out
}

/// The name of the first query parameter of `url` that looks like a credential
/// (`user`, `username`, `usr`, `login`, or a name holding `pass`, `pwd`, `token`,
/// `secret`, `key`, `auth`, `sig` or `credential`), if any: configuration refuses
/// such URLs for cameras, as it refuses user info.
pub fn credential_param(url: &str) -> Option<String> {
    let q = &url[url.find('?')? + 1..];
    let q = &q[..q.find('#').unwrap_or(q.len())];
    q.split('&').map(|kv| kv.split('=').next().unwrap_or("").to_ascii_lowercase()).find(|k| {
        matches!(k.as_str(), "user" | "username" | "usr" | "login")
            || ["pass", "pwd", "token", "secret", "key", "auth", "sig", "credential"].iter().any(|w| k.contains(w))
    })
}

/// Log output with every URL redacted: our own messages redact what they quote,
/// but a library's (an HTTP client at debug level, a GStreamer error) may quote a
/// URL with its user info or query. `tracing_subscriber`'s formatter writes each
/// event in one `write_all`, so a URL is never split across calls.
pub struct Redacted<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if text.contains("://") {
            self.0.write_all(redact_text(&text).as_bytes())?;
        } else {
            self.0.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::{credential_param, redact_text, redact_url};

    #[test]
    fn redacts_inside_text() {
        assert_eq!(
            redact_text("Could not open (rtsp://admin:pw@10.0.0.1/s) or rtsp://u:p@h:1 now"),
            "Could not open (rtsp://***@10.0.0.1/s) or rtsp://***@h:1 now"
        );
        assert_eq!(redact_text("no url here"), "no url here");
        assert_eq!(redact_text("rtsp://clean/x"), "rtsp://clean/x");
        assert_eq!(
            redact_text("error sending request for url (http://hooks.local:9/in?token=SECRET): refused"),
            "error sending request for url (http://hooks.local:9/in): refused"
        );
    }

    #[test]
    fn redacts_userinfo() {
        assert_eq!(redact_url("rtsp://admin:s3cret@10.0.0.5:554/h264"), "rtsp://***@10.0.0.5:554/h264");
        assert_eq!(redact_url("rtsp://user@host/x"), "rtsp://***@host/x");
        assert_eq!(redact_url("rtsp://a:b@c@host/x"), "rtsp://***@host/x");
    }

    #[test]
    fn passwords_with_url_punctuation_do_not_leak() {
        assert_eq!(redact_url("postgres://varta:pa/ss@db:5432/varta"), "postgres://***@db:5432/varta");
        assert_eq!(redact_url("postgres://varta:p?w#d@db/varta"), "postgres://***@db/varta");
        assert_eq!(redact_url("postgres://db/varta?user=varta&password=Y"), "postgres://db/varta");
        assert_eq!(redact_url("rtsp://10.0.0.9/live?channel=1&user=admin&password=Z"), "rtsp://10.0.0.9/live");
        assert_eq!(redact_url("mqtts://u:p@broker:8883"), "mqtts://***@broker:8883");
        // No host found after the user info: nothing of it is printed.
        assert_eq!(redact_url("postgres://varta:secret"), "postgres://***");
        // An `@` in a query reads as user info: more is removed, never less.
        assert_eq!(redact_url("rtsp://host/p?x=a@b"), "rtsp://***@b");
    }

    #[test]
    fn leaves_clean_urls() {
        assert_eq!(redact_url("rtsp://127.0.0.1:8554/cam/1"), "rtsp://127.0.0.1:8554/cam/1");
        assert_eq!(redact_url("rtsp://[::1]:8554/cam/1"), "rtsp://[::1]:8554/cam/1");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn finds_credential_parameters() {
        assert_eq!(credential_param("rtsp://h/live?channel=1&password=Z").as_deref(), Some("password"));
        assert_eq!(credential_param("rtsp://h/live?User=admin").as_deref(), Some("user"));
        assert_eq!(credential_param("http://h/hook?access_token=x").as_deref(), Some("access_token"));
        assert_eq!(credential_param("rtsp://h/live?channel=1&subtype=0"), None);
        assert_eq!(credential_param("rtsp://h/live"), None);
    }
}
