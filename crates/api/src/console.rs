//! The web console: its files and the vendored libraries it uses (uPlot, d3-geo,
//! topojson-client, the region outlines; `console/vendor/README.md`), compiled into
//! the binary (no CDN, no tile server: works offline).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// The vendored files, by the name they are served under: (name, content type, body).
const VENDOR: &[(&str, &str, &str)] = &[
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_str!("../console/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("../console/vendor/uPlot.min.css")),
    ("d3-array.min.js", "text/javascript; charset=utf-8", include_str!("../console/vendor/d3-array.min.js")),
    ("d3-geo.min.js", "text/javascript; charset=utf-8", include_str!("../console/vendor/d3-geo.min.js")),
    (
        "topojson-client.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/vendor/topojson-client.min.js"),
    ),
    ("ukraine-regions.topo.json", "application/json", include_str!("../console/vendor/ukraine-regions.topo.json")),
];

/// `GET /`.
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX).into_response()
}

/// `GET /console/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (ty, body) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        other => match VENDOR.iter().find(|(name, ..)| *name == other) {
            // A pinned version never changes under its name: cached for a day.
            Some((_, ty, body)) => {
                return (StatusCode::OK, [(header::CONTENT_TYPE, *ty), (header::CACHE_CONTROL, "max-age=86400")], *body)
                    .into_response()
            }
            None => return crate::ApiError::from(varta_core::err!(NotFound, "no such file")).into_response(),
        },
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, ty), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::{APP_JS, VENDOR};
    use std::collections::BTreeSet;

    /// The keys of one language's dictionary in `const T = { uk: {…}, en: {…} }`:
    /// identifiers followed by `:` at the dictionary's own depth, string literals
    /// skipped (a value may hold a colon or a brace).
    fn keys(lang: &str) -> BTreeSet<String> {
        let start = APP_JS.find("const T = {").expect("the dictionaries") + "const T = {".len();
        let from = start + APP_JS[start..].find(&format!("{lang}: {{")).expect("the language") + lang.len() + 3;
        let (mut depth, mut out, mut word) = (1, BTreeSet::new(), String::new());
        let mut chars = APP_JS[from..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' | '"' | '`' => {
                    while let Some(d) = chars.next() {
                        if d == '\\' {
                            chars.next();
                        } else if d == c {
                            break;
                        }
                    }
                }
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return out;
                    }
                }
                ':' if depth == 1 && !word.is_empty() => {
                    out.insert(std::mem::take(&mut word));
                }
                c if c.is_alphanumeric() || c == '_' => word.push(c),
                c if c.is_whitespace() => {}
                _ => word.clear(),
            }
        }
        panic!("the {lang} dictionary does not end");
    }

    #[test]
    fn ukrainian_and_english_dictionaries_have_the_same_keys() {
        let (uk, en) = (keys("uk"), keys("en"));
        assert!(uk.len() > 50, "parsed {} keys: {uk:?}", uk.len());
        let only_uk: Vec<_> = uk.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&uk).collect();
        assert!(only_uk.is_empty() && only_en.is_empty(), "only in uk: {only_uk:?}; only in en: {only_en:?}");
        // Every key the console asks for by name is in the dictionaries.
        let mut missing = BTreeSet::new();
        for part in APP_JS.split("t('").skip(1) {
            let key: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if part[key.len()..].starts_with("')") && !uk.contains(&key) {
                missing.insert(key);
            }
        }
        assert!(missing.is_empty(), "t('…') keys in no dictionary: {missing:?}");
    }

    /// Each vendored file is the one `console/vendor/README.md` pins (by sha256), so a
    /// hand edit or a partial `scripts/vendor-console` run is caught.
    #[test]
    fn vendored_files_are_the_pinned_ones() {
        use sha2::{Digest, Sha256};
        let readme = include_str!("../console/vendor/README.md");
        for (name, _, body) in VENDOR {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("{name} not in the README"));
            let sha: String = Sha256::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
            assert!(row.trim_end().ends_with(&format!("`{sha}` |")), "{name}: sha256 {sha} is not the pinned one");
        }
    }
}
