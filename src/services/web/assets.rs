//! The page and everything it loads, inside the binary (a Pi may be
//! offline: no CDN, no web font). The page is in the reader's language
//! where there is a translation: each language is one table of strings,
//! `assets/i18n/TAG.json`, and one line of [`LANGUAGES`].

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Scripts and styles from this server only, none inline; nothing framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every translation of the page, the first the default.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en", include_str!("assets/i18n/en.json")),
    ("ko", include_str!("assets/i18n/ko.json")),
];

const INDEX: &str = include_str!("assets/index.html");

/// The files under `/assets/`, with their types.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "teacher.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/teacher.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// The best language of `Accept-Language` that the page speaks.
pub fn negotiate(accept: Option<&str>) -> &'static str {
    let mut wanted: Vec<(f32, &str)> = accept
        .unwrap_or_default()
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            Some((q, tag))
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // Stable: among equal weights, the order given.
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
    wanted
        .iter()
        .filter_map(|(_, tag)| {
            let primary = tag.split('-').next()?.to_ascii_lowercase();
            LANGUAGES
                .iter()
                .find(|(t, _)| *t == primary)
                .map(|(t, _)| *t)
        })
        .next()
        .unwrap_or(LANGUAGES[0].0)
}

/// `GET /`: the page, in the reader's language.
pub async fn index(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let lang = negotiate(accept);
    let page = INDEX.replacen("<html lang=\"en\">", &format!("<html lang=\"{lang}\">"), 1);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::VARY, "Accept-Language"),
        ],
        page,
    )
        .into_response()
}

/// `GET /assets/FILE`.
pub async fn file(Path(file): Path<String>) -> Response {
    let found = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, kind, body)| (*kind, *body))
        .or_else(|| {
            let tag = file.strip_prefix("i18n/")?.strip_suffix(".json")?;
            let (_, table) = LANGUAGES.iter().find(|(t, _)| *t == tag)?;
            Some(("application/json", *table))
        });
    match found {
        Some((kind, body)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_language_spoken_wins() {
        assert_eq!(negotiate(None), "en");
        assert_eq!(negotiate(Some("ko-KR,ko;q=0.9,en-US;q=0.8")), "ko");
        assert_eq!(negotiate(Some("fr-FR, en;q=0.5, ko;q=0.7")), "ko");
        assert_eq!(negotiate(Some("de, *;q=0.1")), "en");
        assert_eq!(negotiate(Some("ko;q=0, en")), "en");
        assert_eq!(negotiate(Some(";;;,q=,")), "en");
    }

    #[test]
    fn every_language_has_every_string_of_the_first() {
        let tables: Vec<(&str, serde_json::Map<String, serde_json::Value>)> = LANGUAGES
            .iter()
            .map(|(tag, text)| (*tag, serde_json::from_str(text).expect(tag)))
            .collect();
        let (_, first) = &tables[0];
        for (tag, table) in &tables[1..] {
            for key in first.keys() {
                assert!(table.contains_key(key), "{tag} lacks {key}");
            }
        }
    }
}
