//! Running the real `curl`, and reading what it got.

use std::process::{Command, Stdio};

use serde_json::Value;

/// What `curl` got: the HTTP status, the protocol version and the body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: String,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// The marker that separates the body from what `-w` writes after it.
const TRAILER: &str = "\n--curl-trailer--";

/// Runs `curl -sS <args>` and returns the status, version and body.
pub fn curl(args: &[&str]) -> Reply {
    let output = Command::new("curl")
        .arg("-sS")
        .args(["-w", &format!("{TRAILER}%{{http_code}} %{{http_version}}")])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl (the suite needs the curl binary; .ci/run installs it)");
    let stdout = String::from_utf8(output.stdout).expect("curl prints UTF-8");
    let (body, trailer) = stdout
        .rsplit_once(TRAILER)
        .unwrap_or_else(|| panic!("curl failed: {}", String::from_utf8_lossy(&output.stderr)));
    let (status, version) = trailer.split_once(' ').unwrap();
    Reply {
        status: status.parse().unwrap(),
        version: version.to_string(),
        body: body.to_string(),
    }
}

/// Runs `script` with `sh -c`, with `API` (and `vars`) in its environment, as a user's shell
/// runs a line of theirs; returns its standard output.
pub fn shell(api: &str, vars: &[(&str, &str)], script: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", script])
        .env("API", api)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    assert!(
        output.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `method path` with a JSON body (or none) and an optional bearer token.
pub fn call(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Reply {
    let url = format!("{base}{path}");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-X", method, url.as_str()];
    if let Some(body) = body {
        args.extend(["-d", body]);
    }
    if let Some(auth) = &auth {
        args.extend(["-H", auth.as_str()]);
    }
    curl(&args)
}
