//! The console's stylesheet and script, compiled into the binary.
//!
//! Each is served as `/console/assets/<stem>.<hash>.<ext>`, where the hash
//! is computed from the file's bytes by a `const fn` at compile time: a new
//! build with a changed file gets a new name, so browsers can keep every
//! name for a year (`immutable`) and never see a stale copy. Gzip is applied
//! by the router's compression layer when the browser accepts it.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// One embedded file.
pub struct Asset {
    /// `console.css`, `console.js`.
    pub file: &'static str,
    /// Its content type.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
    /// FNV-1a of its bytes.
    pub hash: u64,
}

impl Asset {
    /// The URL path it is served under.
    pub fn path(&self) -> String {
        let (stem, ext) = self.file.rsplit_once('.').unwrap_or((self.file, ""));
        format!("/console/assets/{stem}.{:016x}.{ext}", self.hash)
    }
}

/// FNV-1a, 64 bits: a name that changes with the content, not a security
/// measure (the files are ours).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const CSS_BYTES: &[u8] = include_bytes!("../../console/console.css");
const JS_BYTES: &[u8] = include_bytes!("../../console/console.js");
const ICON_BYTES: &[u8] = include_bytes!("../../console/favicon.svg");

/// The stylesheet.
pub const CSS: Asset = Asset {
    file: "console.css",
    content_type: "text/css; charset=utf-8",
    bytes: CSS_BYTES,
    hash: fnv1a(CSS_BYTES),
};

/// The script: streamed answers and live email status.
pub const JS: Asset = Asset {
    file: "console.js",
    content_type: "text/javascript; charset=utf-8",
    bytes: JS_BYTES,
    hash: fnv1a(JS_BYTES),
};

/// The tab's icon: without one the browser asks for `/favicon.ico`.
pub const ICON: Asset = Asset {
    file: "favicon.svg",
    content_type: "image/svg+xml",
    bytes: ICON_BYTES,
    hash: fnv1a(ICON_BYTES),
};

/// Every asset.
pub const ALL: [&Asset; 3] = [&CSS, &JS, &ICON];

/// `GET /console/assets/{name}`: the asset whose hashed name this is.
pub async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = ALL
        .into_iter()
        .find(|a| a.path().rsplit('/').next() == Some(name.as_str()))
    else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            "no such asset",
        )
            .into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        let css = CSS.path();
        assert!(css.starts_with("/console/assets/console."), "{css}");
        assert!(css.ends_with(".css"));
        assert!(css.contains(&format!("{:016x}", fnv1a(CSS_BYTES))));
        assert_ne!(CSS.path(), JS.path());
    }
}
