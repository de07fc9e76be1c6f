//! A real headless Chromium, driven over WebDriver: Debian's `chromium` through its
//! `chromedriver`, with the browser's console log collected after every step so a test can
//! assert that a page logged no error.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};

/// How long any one wait for the page may take before the test fails (a page that never shows
/// what it should is a failure, not a reason to hang).
pub const WAIT: Duration = Duration::from_secs(30);

/// One browser log entry (`goog:loggingPrefs`): level, source and text.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    /// `console-api`, `javascript` (uncaught exceptions), `network`, ...
    pub source: String,
    /// The message as Chromium wrote it.
    pub message: String,
}

/// A chromedriver process and a session of headless Chromium. [`Browser::close`] ends the
/// session (chromedriver then quits Chromium); if a test fails first, dropping it kills
/// chromedriver's process group, where Chromium runs too, so no browser outlives its test.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    log: Vec<LogEntry>,
    shots: PathBuf,
}

/// Where a program is: the environment variable if set, else the Debian path, else `PATH`.
fn program(env: &str, debian: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    if Path::new(debian).exists() {
        return Some(PathBuf::from(debian));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.exists())
    })
}

/// A free local port for chromedriver (it takes a port number, not a bound socket).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, the browser log on.
    /// Fails, saying what to install, when either program is missing.
    pub async fn start() -> Browser {
        let install = "install Debian's `chromium` and `chromium-driver` packages \
             (`apt-get install -y chromium chromium-driver`; `.ci/run` does), or point \
             CHROMEDRIVER and CHROMIUM at a chromedriver and a Chromium of the same version";
        let driver_path = program("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")
            .unwrap_or_else(|| panic!("the console test needs chromedriver: {install}"));
        let chromium = program("CHROMIUM", "/usr/bin/chromium", "chromium")
            .unwrap_or_else(|| panic!("the console test needs Chromium: {install}"));
        let port = free_port();
        let mut driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {install}", driver_path.display()));
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        // chromedriver listens a moment after it starts; ask until it answers.
        let mut client = None;
        for _ in 0..300 {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited at start ({status}); {install}");
            }
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&webdriver)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(client) = client else {
            let _ = driver.kill();
            panic!("no WebDriver session from {webdriver}: {last_error}");
        };
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&shots).expect("create target/console-screenshots");
        Browser {
            client,
            driver,
            _profile: profile,
            log: Vec::new(),
            shots,
        }
    }

    /// Loads `url`.
    pub async fn goto(&mut self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The element `css` selects, once it is on the page.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    /// Clicks what `css` selects.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Types `text` into the (emptied) field `css` selects.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear the field");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns a truthy value and returns it; fails naming `what`.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = self.js(script, vec![]).await;
            if !matches!(value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0)
            {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {WAIT:?} for {what}; the page shows:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the page's main area, for failure messages.
    pub async fn page_text(&self) -> String {
        self.client
            .execute(
                "return document.querySelector('main')?.innerText || document.body.innerText",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Saves a PNG of the whole page (the window is made as tall as the page for the shot, at
    /// most 4000 px) as `target/console-screenshots/<name>.png`, for people to review.
    pub async fn screenshot(&self, name: &str) {
        let (width, height) = self
            .client
            .get_window_size()
            .await
            .expect("the window size");
        let page = self
            .js(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;",
                vec![],
            )
            .await
            .as_u64()
            .unwrap_or(height)
            .min(4000);
        let taller = page > height;
        if taller {
            self.resize(width as u32, page as u32).await;
        }
        let png = self.client.screenshot().await.expect("screenshot");
        if taller {
            self.resize(width as u32, height as u32).await;
        }
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("save the screenshot");
    }

    /// Resizes the window (CSS pixels), e.g. to a phone's.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize the window");
    }

    /// Renders the pages as the system's dark (`true`) or light colour scheme would.
    pub async fn dark(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.client
            .issue_cmd(Cdp {
                cmd: "Emulation.setEmulatedMedia",
                params: json!({ "features": [{ "name": "prefers-color-scheme", "value": value }] }),
            })
            .await
            .expect("emulate the colour scheme");
    }

    /// Reads the browser log entries written since the last call and keeps them.
    pub async fn collect_log(&mut self) -> Vec<LogEntry> {
        let value = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("read the browser log (chromedriver's /se/log)");
        let entries: Vec<LogEntry> = value
            .as_array()
            .expect("the browser log is an array")
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_string(),
                source: e["source"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        self.log.extend(entries.iter().cloned());
        entries
    }

    /// Every `SEVERE` entry (a `console.error`, an uncaught exception, a failed load) the browser
    /// logged so far.
    pub async fn errors(&mut self) -> Vec<LogEntry> {
        self.collect_log().await;
        self.log
            .iter()
            .filter(|e| e.level == "SEVERE")
            .cloned()
            .collect()
    }

    /// Forgets the entries collected so far (after a step that logs errors on purpose).
    pub async fn forget_log(&mut self) {
        self.collect_log().await;
        self.log.clear();
    }
}

impl Browser {
    /// Ends the WebDriver session, which quits Chromium, and stops chromedriver.
    pub async fn close(self) {
        self.client
            .clone()
            .close()
            .await
            .expect("end the WebDriver session");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group chromedriver leads (`process_group(0)`) holds the browser it started.
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

/// A Chrome DevTools Protocol command through chromedriver (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()),
        )
    }
}

/// chromedriver's log endpoint (`POST /session/{id}/se/log` with `{"type": "browser"}`): the
/// entries logged since the last read, with their level and source.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}
