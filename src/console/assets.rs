//! The console's files, embedded at compile time, and their version.

/// One embedded file, by its path under `assets/`.
pub(super) struct Asset {
    /// The path under `/assets/<version>/`.
    pub path: &'static str,
    /// Its contents.
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        /// Every file the page loads (the page itself is [`index_html`]).
        pub(super) const ASSETS: &[Asset] = &[
            $(Asset { path: $path, bytes: include_bytes!(concat!("assets/", $path)) },)*
        ];
    };
}

assets![
    "style.css",
    "favicon.svg",
    "app.js",
    "api.js",
    "sse.js",
    "ui.js",
    "charts.js",
    "timeline.js",
    "pages/executions.js",
    "pages/execution.js",
    "pages/agents.js",
    "pages/teams.js",
    "pages/workers.js",
    "pages/dashboard.js",
    "pages/signin.js",
];

const INDEX_HTML: &str = include_str!("assets/index.html");

/// The page, with `{{version}}` where the asset version goes.
pub(super) fn index_html() -> &'static str {
    INDEX_HTML
}

/// A hash of the page and every asset (64-bit FNV-1a), as 16 hex digits: it changes whenever
/// any file does, so it versions the asset URLs.
pub(super) const VERSION: &str = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const DIGITS: [u8; 16] = {
        let mut hash = fnv(0xcbf2_9ce4_8422_2325, INDEX_HTML.as_bytes());
        let mut i = 0;
        while i < ASSETS.len() {
            hash = fnv(hash, ASSETS[i].bytes);
            i += 1;
        }
        let mut digits = [0u8; 16];
        let mut d = 0;
        while d < 16 {
            digits[d] = HEX[((hash >> (60 - 4 * d)) & 0xf) as usize];
            d += 1;
        }
        digits
    };
    match std::str::from_utf8(&DIGITS) {
        Ok(version) => version,
        Err(_) => panic!("hex digits are ASCII"),
    }
};

/// Folds `bytes` into a 64-bit FNV-1a hash.
const fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}
